//! The configuration as documented: every key of `baa-logd`'s settings is
//! in docs/configuration.md's table, with the default the code has.

use std::collections::BTreeMap;

use baa_logd::Settings;

/// The table of docs/configuration.md: each dotted TOML key with its
/// Default column.
fn documented_defaults() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let text = std::fs::read_to_string(path).expect("docs/configuration.md");
    text.lines()
        .map(|line| line.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells.len() == 7 && cells[2].starts_with("`--"))
        .map(|cells| {
            let key = cells[1].trim_matches('`').to_owned();
            (key, cells[4].trim_matches('`').to_owned())
        })
        .collect()
}

/// Every setting with a default is documented with that very default,
/// every documented key is a setting, and no two settings end in the same
/// name (a flag is named after the last part of its key, and its help
/// shows the default found by that name).
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
    // Settings without a default (unset unless given) print nothing.
    let unset = [
        "metrics_listen",
        "web_listen",
        "token_file",
        "tls.cert",
        "tls.key",
        "tls.client_ca",
        "retention.max_age",
        "retention.max_bytes",
        "nats.creds_file",
        "nats.ca_file",
        "nats.cert_file",
        "nats.key_file",
    ];
    for key in documented.keys() {
        assert!(
            defaults.iter().any(|(name, _)| name == key) || unset.contains(&key.as_str()),
            "docs/configuration.md documents `{key}`, which is not a setting"
        );
    }
    let mut names: Vec<&str> = defaults
        .iter()
        .map(|(key, _)| key.as_str())
        .chain(unset)
        .map(|key| key.rsplit('.').next().expect("a name"))
        .collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "two settings share a name: {names:?}");
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

/// Boolean settings from the environment take 1/0, true/false, yes/no and
/// on/off, as neighbouring tools do; anything else is refused.
#[test]
fn boolean_environment_values_are_taken_in_every_usual_form() {
    let dir = tempfile::tempdir().unwrap();
    let print = |value: &str| {
        std::process::Command::new(crate::util::process::server_binary())
            .arg("--print-config")
            .arg("--data-dir")
            .arg(dir.path())
            .env("BAA_LOGD_SYNC", value)
            .output()
            .expect("baa-logd runs")
    };
    for (value, expected) in [
        ("1", true),
        ("yes", true),
        ("true", true),
        ("on", true),
        ("0", false),
        ("no", false),
        ("false", false),
        ("off", false),
    ] {
        let output = print(value);
        assert!(output.status.success(), "BAA_LOGD_SYNC={value}: {output:?}");
        let config = String::from_utf8_lossy(&output.stdout);
        assert!(
            config.contains(&format!("sync = {expected}")),
            "BAA_LOGD_SYNC={value}: {config}"
        );
    }
    let output = print("maybe");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
