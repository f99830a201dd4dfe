//! The config parser and validator on any text: an error (with a line) or a config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match gatehouse_config::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            // A valid config diffs against itself as unchanged.
            assert!(gatehouse_config::diff(&cfg, &cfg).is_empty());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
