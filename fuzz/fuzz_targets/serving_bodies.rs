#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backprop::fuzzing::serving_bodies(data));
