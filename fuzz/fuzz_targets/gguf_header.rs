//! GGUF header parsing: any bytes, with and without the file size, must give a header, a
//! request for more bytes, or a typed error; never a panic or an allocation beyond the caps.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wasm_chord::gguf::{parse_header, HeaderParse};

fuzz_target!(|data: &[u8]| {
    for size in [None, Some(data.len() as u64)] {
        if let Ok(HeaderParse::Complete(h)) = parse_header(data, size) {
            // The typed accessors over whatever metadata parsed.
            let _ = h.architecture();
            let _ = h.context_length();
            let _ = h.tokenizer_tokens();
            let _ = h.rope_scaling();
            let _ = h.min_file_size();
            for t in &h.tensors {
                let _ = h.tensor_range(t);
            }
        }
    }
});
