//! A run's objects on the page: `GET /api/runs/{task}/{run}/objects`
//! lists them as JSON, and `GET /runs/{task}/{run}/objects/{kind}/{*name}`
//! downloads one (`kind` is `artifact`, or `checkpoint` with the slot as
//! the name's first component: `checkpoint/3/model.bin`). Both are calls
//! to the logging service's handlers for the reader's token, so the
//! `read` scope and task limits hold as over gRPC.
//!
//! A download is sent as an attachment with `application/octet-stream`:
//! objects are not masked, and the page never shows their content.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use baa_logging::{pb, pb_server::logging_service_server::LoggingService};
use baa_logging_store::RunStore;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{
    Page,
    problem::Problem,
    raw::{ascii_name, percent_encode},
    session::Reader,
};

/// `GET /api/runs/{task}/{run}/objects`: the run's artifacts and
/// checkpoints with their sizes, digests and times.
pub(super) async fn list<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    Path((task_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let request = pb::ListObjectsRequest {
        task_id,
        run_id,
        kind: pb::ObjectKind::Unspecified.into(),
    };
    let listing = page
        .service
        .list_objects(reader.request(request))
        .await?
        .into_inner();
    let objects: Vec<Value> = listing
        .objects
        .iter()
        .map(|object| {
            json!({
                "kind": kind_name(object.kind()),
                "name": object.name,
                "checkpointSeq": object.checkpoint_seq,
                "size": object.size,
                "sha256": hex::encode(&object.sha256),
                "modifiedAt": object.modified_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "objects": objects,
        "totalBytes": listing.total_bytes,
    })))
}

/// `GET /runs/{task}/{run}/objects/{kind}/{*name}`: one object's bytes.
pub(super) async fn download<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    Path((task_id, run_id, kind, name)): Path<(String, String, String, String)>,
) -> Result<Response, Problem> {
    let (kind, checkpoint_seq, name) = match kind.as_str() {
        "artifact" => (pb::ObjectKind::Artifact, 0, name),
        "checkpoint" => {
            let (seq, rest) = name
                .split_once('/')
                .ok_or_else(|| Problem::invalid("a checkpoint object is named SLOT/NAME"))?;
            let seq = seq
                .parse()
                .map_err(|_| Problem::invalid("a checkpoint slot is a number"))?;
            (pb::ObjectKind::Checkpoint, seq, rest.to_owned())
        }
        _ => return Err(Problem::invalid("the kind is artifact or checkpoint")),
    };
    let request = pb::DownloadObjectRequest {
        object: Some(pb::ObjectRef {
            task_id,
            run_id,
            kind: kind.into(),
            name: name.clone(),
            checkpoint_seq,
        }),
        offset: 0,
    };
    let mut stream = page
        .service
        .download_object(reader.request(request))
        .await?
        .into_inner();
    // The first piece names the object: its size is the length.
    let first = stream
        .next()
        .await
        .ok_or_else(|| Problem::from(tonic::Status::internal("the download sent nothing")))??;
    let size = first.object.as_ref().map_or(0, |object| object.size);
    let head = futures::stream::iter([Ok(first.data)]);
    let rest = stream.map(|piece| {
        piece
            .map(|piece| piece.data)
            .map_err(|status| std::io::Error::other(status.message().to_owned()))
    });
    let file_name = name.rsplit('/').next().unwrap_or(&name).to_owned();
    let disposition = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_name(&file_name),
        percent_encode(&file_name)
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|_| Problem::invalid("file name"))?,
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(size)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(head.chain(rest)),
    )
        .into_response())
}

/// A kind as the page names it.
fn kind_name(kind: pb::ObjectKind) -> &'static str {
    match kind {
        pb::ObjectKind::Checkpoint => "checkpoint",
        _ => "artifact",
    }
}
