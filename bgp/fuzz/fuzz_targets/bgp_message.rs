//! The BGP decoder: see `checks::bgp_message`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::bgp_message(data);
});
