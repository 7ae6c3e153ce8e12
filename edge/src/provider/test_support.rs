//! Helpers the providers' stream tests share.

use serde_json::Value;

use super::decode::{StreamDecoder, StreamFault};

/// Feed `chunks` to `decoder` (stopping at the first fault), then finish it.
pub fn drive<D: StreamDecoder>(mut decoder: D, chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, D) {
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(fault) = decoder.push(chunk, &mut out) {
            return (out, Err(fault), decoder);
        }
    }
    let result = decoder.finish(&mut out);
    (out, result, decoder)
}

/// The first choice's delta of every chunk that has one.
pub fn deltas(out: &[Value]) -> Vec<Value> {
    out.iter().filter_map(|c| c["choices"].get(0).map(|c| c["delta"].clone())).collect()
}
