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

/// Asserts that a stream translates the same however its bytes are cut: `run` (feed the chunks,
/// then finish) must succeed with the same chunks for `bytes` whole, cut in two at each point of
/// `splits`, and cut into random pieces of 1 to `max_piece` bytes in 200 rounds (a deterministic
/// LCG started at `seed`, no rand crate).
pub fn assert_chunking_independent<D>(
    bytes: &[u8],
    splits: impl Iterator<Item = usize>,
    mut seed: u64,
    max_piece: u64,
    run: impl Fn(&[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, D),
) {
    let (expected, result, _) = run(&[bytes]);
    assert_eq!(result, Ok(()));
    for split in splits {
        let (out, result, _) = run(&[&bytes[..split], &bytes[split..]]);
        assert_eq!(result, Ok(()), "split at {split}");
        assert_eq!(out, expected, "split at {split}");
    }
    for round in 0..200 {
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = 1 + ((seed >> 33) % max_piece) as usize;
            let end = (at + len).min(bytes.len());
            chunks.push(&bytes[at..end]);
            at = end;
        }
        let (out, result, _) = run(&chunks);
        assert_eq!(result, Ok(()), "round {round}");
        assert_eq!(out, expected, "round {round}");
    }
}
