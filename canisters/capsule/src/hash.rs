//! SHA-256 computed piece by piece across messages.
//!
//! An upload's chunks arrive in separate messages, so the digest of the whole blob is built as they
//! come: the compression state after the leading chunks is stored with the upload, and finishing
//! costs the padding of the last block instead of a second pass over every byte. Every chunk but the
//! last is a whole number of 64-byte blocks (`CHUNK_SIZE` is a multiple of 64), so the state never
//! needs to carry a partial block between messages.

use candid::{CandidType, Deserialize};
use serde_bytes::ByteBuf;
use sha2::digest::generic_array::GenericArray;

const BLOCK: usize = 64;
const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256 of a message's prefix whose length is a multiple of 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunningSha256 {
    state: [u32; 8],
    len: u64,
}

impl Default for RunningSha256 {
    fn default() -> Self {
        RunningSha256 {
            state: INITIAL_STATE,
            len: 0,
        }
    }
}

impl RunningSha256 {
    /// Bytes absorbed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been absorbed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Absorbs whole blocks. Panics if `bytes` is not a multiple of 64 bytes long: callers feed
    /// only full chunks here.
    pub fn absorb(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len().is_multiple_of(BLOCK),
            "absorb takes whole 64-byte blocks"
        );
        self.compress(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digest of everything absorbed followed by `tail` (of any length).
    pub fn finish(mut self, tail: &[u8]) -> [u8; 32] {
        let whole = tail.len() - tail.len() % BLOCK;
        self.compress(&tail[..whole]);
        let bits = (self.len + tail.len() as u64).wrapping_mul(8);
        let rest = &tail[whole..];
        // The padding: 0x80, zeros, then the message length in bits, big-endian, in one or two blocks.
        let mut last = [0u8; 2 * BLOCK];
        last[..rest.len()].copy_from_slice(rest);
        last[rest.len()] = 0x80;
        let end = if rest.len() + 1 + 8 <= BLOCK {
            BLOCK
        } else {
            2 * BLOCK
        };
        last[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        self.compress(&last[..end]);
        let mut out = [0u8; 32];
        for (word, bytes) in self.state.iter().zip(out.chunks_exact_mut(4)) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, bytes: &[u8]) {
        for block in bytes.chunks_exact(BLOCK) {
            sha2::compress256(&mut self.state, &[*GenericArray::from_slice(block)]);
        }
    }

    /// The stored form: the state words big-endian, then the length.
    pub fn to_stored(self) -> StoredSha256 {
        let mut state = Vec::with_capacity(32);
        for word in self.state {
            state.extend_from_slice(&word.to_be_bytes());
        }
        StoredSha256 {
            state: ByteBuf::from(state),
            len: self.len,
        }
    }

    /// Reads the stored form back; `None` if it is malformed.
    pub fn from_stored(stored: &StoredSha256) -> Option<RunningSha256> {
        if stored.state.len() != 32 || !stored.len.is_multiple_of(BLOCK as u64) {
            return None;
        }
        let mut state = [0u32; 8];
        for (word, bytes) in state.iter_mut().zip(stored.state.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        }
        Some(RunningSha256 {
            state,
            len: stored.len,
        })
    }
}

/// `RunningSha256` as stored in a record.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredSha256 {
    /// The eight state words, big-endian (32 bytes).
    pub state: ByteBuf,
    /// Bytes absorbed, a multiple of 64.
    pub len: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn equals_sha256_for_every_tail_length() {
        for len in 0..300 {
            let bytes = data(len);
            let expected: [u8; 32] = Sha256::digest(&bytes).into();
            assert_eq!(
                RunningSha256::default().finish(&bytes),
                expected,
                "len {len}"
            );
        }
    }

    #[test]
    fn equals_sha256_across_pieces_and_storage() {
        let bytes = data(64 * 40 + 55);
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        let mut h = RunningSha256::default();
        for piece in bytes[..64 * 40].chunks(64 * 8) {
            h = RunningSha256::from_stored(&h.to_stored()).expect("round trip");
            h.absorb(piece);
        }
        assert_eq!(h.len(), 64 * 40);
        assert_eq!(h.finish(&bytes[64 * 40..]), expected);
    }

    #[test]
    fn malformed_stored_state_is_refused() {
        let mut stored = RunningSha256::default().to_stored();
        stored.len = 3;
        assert_eq!(RunningSha256::from_stored(&stored), None);
        let stored = StoredSha256 {
            state: ByteBuf::from(vec![0; 31]),
            len: 0,
        };
        assert_eq!(RunningSha256::from_stored(&stored), None);
    }

    #[test]
    #[should_panic(expected = "whole 64-byte blocks")]
    fn absorb_refuses_a_partial_block() {
        RunningSha256::default().absorb(&[0; 65]);
    }
}
