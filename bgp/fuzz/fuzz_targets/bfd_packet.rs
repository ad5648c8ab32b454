//! The BFD decoder and session: see `checks::bfd_packet`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::bfd_packet(data);
});
