//! `config.toml`: `NodeConfig::from_toml` (toml + serde, `deny_unknown_fields`, then
//! `NodeConfig::validate`, which also parses `log_level` as a tracing `EnvFilter`), exactly as
//! `NodeConfig::load` runs it on the file's text. If accepted: `to_toml` and re-parse give the
//! same value (TOML is not canonical, so the round trip is value-level), and command-line
//! overrides apply without panicking.
#![no_main]

use bftnode_fuzz::config::{ConfigOverrides, NodeConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `load` reads the file with `read_to_string`: non-UTF-8 is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = NodeConfig::from_toml(text, "fuzz") else {
        return;
    };
    let out = cfg.to_toml().expect("an accepted config serialises");
    let back = NodeConfig::from_toml(&out, "fuzz-roundtrip").expect("re-parse of to_toml");
    assert_eq!(back, cfg, "config TOML value round trip");
    let mut c = cfg.clone();
    c.apply(&ConfigOverrides {
        log_level: Some("info".into()),
        ..Default::default()
    });
    let _ = c.validate();
});
