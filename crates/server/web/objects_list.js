/**
 * @file The run page's list of the run's artifacts and checkpoints
 * (`#objects`), each a download link with its size. Hidden while the run
 * has none; loaded when the page opens and again when the run's state
 * changes (an `exec --artifacts` uploads before the run ends).
 */

import { getJson, runPath } from "./api.js";
import { h, replaceChildren } from "./dom.js";

/**
 * A size for people: bytes, KiB, MiB or GiB.
 *
 * @param {number} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * The download path of an object, every component percent-encoded.
 *
 * @param {string} taskId
 * @param {string} runId
 * @param {{kind: string, name: string, checkpointSeq: number}} object
 * @returns {string}
 */
export function objectPath(taskId, runId, object) {
  const parts = object.name.split("/").map(encodeURIComponent);
  if (object.kind === "checkpoint") parts.unshift(String(object.checkpointSeq));
  return `/runs/${encodeURIComponent(taskId)}/${encodeURIComponent(runId)}/objects/${object.kind}/${parts.join("/")}`;
}

/** The list of a run's objects. */
export class ObjectList {
  /**
   * @param {string} taskId
   * @param {string} runId
   */
  constructor(taskId, runId) {
    this.taskId = taskId;
    this.runId = runId;
    this.list = h("ul", { class: "object-list" });
    this.summary = h("summary", {}, "Artifacts");
    this.element = h("details", { id: "objects", class: "objects", hidden: true }, this.summary, this.list);
  }

  /** Fetches the listing and shows it; errors leave the list as it was. */
  async load() {
    let listing;
    try {
      listing = await getJson(runPath(this.taskId, this.runId, "/objects"));
    } catch {
      return;
    }
    const objects = listing.objects || [];
    this.element.hidden = objects.length === 0;
    replaceChildren(this.summary, `Artifacts and checkpoints (${objects.length})`);
    replaceChildren(this.list, ...objects.map((object) => {
      const label = object.kind === "checkpoint" ? `checkpoint ${object.checkpointSeq}: ${object.name}` : object.name;
      const file = object.name.split("/").pop();
      return h("li", { class: ["object", object.kind] },
        h("a", { href: objectPath(this.taskId, this.runId, object), download: file, title: `sha256 ${object.sha256}` }, label),
        h("span", { class: "size" }, ` ${formatBytes(object.size)}`));
    }));
  }
}
