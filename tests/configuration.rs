//! The configuration as documented: every key of `baa-logd`'s settings is
//! in docs/configuration.md's table, with the default the code has.

use std::collections::BTreeMap;

use baa_logd::Settings;

/// The table of docs/configuration.md: each TOML key (the part after its
/// table name, as [`Settings::defaults`] names them) with its Default
/// column.
fn documented_defaults() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let text = std::fs::read_to_string(path).expect("docs/configuration.md");
    text.lines()
        .map(|line| line.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells.len() == 7 && cells[2].starts_with("`--"))
        .map(|cells| {
            let key = cells[1].trim_matches('`');
            let key = key.rsplit('.').next().expect("a key").to_owned();
            (key, cells[4].trim_matches('`').to_owned())
        })
        .collect()
}

/// Every setting with a default is documented with that very default, and
/// every documented key is a setting.
#[test]
fn the_documented_defaults_are_the_code_defaults() {
    let documented = documented_defaults();
    let defaults = Settings::defaults();
    for (key, default) in &defaults {
        assert_eq!(
            documented.get(key),
            Some(default),
            "docs/configuration.md documents `{key}` with another default than the code's"
        );
    }
    let known = toml::to_string(&Settings::default()).expect("the defaults print");
    for key in documented.keys() {
        assert!(
            defaults.iter().any(|(name, _)| name == key)
                || [
                    "metrics_listen",
                    "token_file",
                    "cert",
                    "key",
                    "client_ca",
                    "max_age",
                    "max_bytes"
                ]
                .contains(&key.as_str()),
            "docs/configuration.md documents `{key}`, which is not a setting:\n{known}"
        );
    }
}

/// A limit that cannot work stops `baa-logd` before it serves, with exit
/// code 2 and the limit's name.
#[test]
fn limits_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(crate::util::process::server_binary())
        .args(["--listen", "127.0.0.1:0", "--max-message-bytes", "1000"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("baa-logd runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("limits.max_entry_bytes (1048576) is over max_message_bytes (1000)"),
        "{stderr}"
    );
}
