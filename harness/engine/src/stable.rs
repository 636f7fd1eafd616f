//! Stable memory: sparse 4 KiB chunks (unwritten chunks read as zero) with a per-execution undo journal, so
//! that rolling back a trapped message costs only what the message wrote, not the size of stable memory.

use std::collections::HashSet;

pub const WASM_PAGE: u64 = 65_536;
const CHUNK: usize = 4096;
type Chunk = Box<[u8; CHUNK]>;

#[derive(Default)]
struct Journal {
    old_pages: u64,
    saved: Vec<(usize, Option<Chunk>)>,
    seen: HashSet<usize>,
}

#[derive(Default)]
pub struct StableMemory {
    pages: u64,
    chunks: Vec<Option<Chunk>>,
    journal: Option<Journal>,
}

impl StableMemory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size_pages(&self) -> u64 {
        self.pages
    }

    pub fn size_bytes(&self) -> u64 {
        self.pages * WASM_PAGE
    }

    /// Start journaling writes of one execution.
    /// If a journal is already active (an upgrade spanning pre_upgrade and post_upgrade), it is kept.
    pub fn begin(&mut self) {
        if self.journal.is_none() {
            self.journal = Some(Journal {
                old_pages: self.pages,
                ..Default::default()
            });
        }
    }

    /// Keep what the execution wrote.
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undo everything since `begin`.
    pub fn rollback(&mut self) {
        if let Some(j) = self.journal.take() {
            for (idx, old) in j.saved.into_iter().rev() {
                if idx < self.chunks.len() {
                    self.chunks[idx] = old;
                }
            }
            self.pages = j.old_pages;
            let n = (self.pages * WASM_PAGE) as usize / CHUNK;
            self.chunks.truncate(n);
        }
    }

    /// Grow by `new_pages`; returns the old size or None if the result would exceed `max_bytes`.
    pub fn grow(&mut self, new_pages: u64, max_bytes: u64) -> Option<u64> {
        let old = self.pages;
        let total = old.checked_add(new_pages)?;
        if total.checked_mul(WASM_PAGE)? > max_bytes {
            return None;
        }
        // Chunks are allocated lazily on write: growing by a lot costs nothing until it is used.
        self.pages = total;
        Some(old)
    }

    fn in_bounds(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.size_bytes())
    }

    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), String> {
        if !self.in_bounds(offset, dst.len() as u64) {
            return Err("stable memory out of bounds".into());
        }
        let mut done = 0usize;
        let mut off = offset as usize;
        while done < dst.len() {
            let idx = off / CHUNK;
            let within = off % CHUNK;
            let n = (CHUNK - within).min(dst.len() - done);
            match self.chunks.get(idx) {
                Some(Some(c)) => dst[done..done + n].copy_from_slice(&c[within..within + n]),
                _ => dst[done..done + n].fill(0),
            }
            done += n;
            off += n;
        }
        Ok(())
    }

    pub fn write(&mut self, offset: u64, src: &[u8]) -> Result<(), String> {
        if !self.in_bounds(offset, src.len() as u64) {
            return Err("stable memory out of bounds".into());
        }
        let mut done = 0usize;
        let mut off = offset as usize;
        while done < src.len() {
            let idx = off / CHUNK;
            let within = off % CHUNK;
            let n = (CHUNK - within).min(src.len() - done);
            if idx >= self.chunks.len() {
                self.chunks.resize_with(idx + 1, || None);
            }
            if let Some(j) = &mut self.journal {
                if j.seen.insert(idx) {
                    j.saved.push((idx, self.chunks[idx].clone()));
                }
            }
            let c = self.chunks[idx].get_or_insert_with(|| Box::new([0u8; CHUNK]));
            c[within..within + n].copy_from_slice(&src[done..done + n]);
            done += n;
            off += n;
        }
        Ok(())
    }

    /// Full contents (for tests/inspection; allocates).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.size_bytes() as usize];
        let _ = self.read(0, &mut v);
        v
    }

    /// Bytes actually allocated for written chunks.
    pub fn resident_bytes(&self) -> u64 {
        self.chunks.iter().filter(|c| c.is_some()).count() as u64 * CHUNK as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_growth_is_lazy() {
        let mut s = StableMemory::new();
        assert_eq!(s.grow(400 << 14, 500 << 30), Some(0)); // 400 GiB
        assert_eq!(s.size_bytes(), 400 << 30);
        assert_eq!(s.resident_bytes(), 0);
        let mut b = [1u8; 3];
        s.read((300u64 << 30) + 5, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0]);
        s.begin();
        s.write(1 << 30, b"abc").unwrap();
        s.rollback();
        s.read(1 << 30, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0]);
        assert!(s.grow(200 << 14, 500 << 30).is_none(), "over the limit");
    }

    #[test]
    fn journal_rolls_back_writes_and_growth() {
        let mut s = StableMemory::new();
        assert_eq!(s.grow(2, u64::MAX), Some(0));
        s.write(10, b"hello").unwrap();
        s.begin();
        s.write(12, b"XX").unwrap();
        assert_eq!(s.grow(3, u64::MAX), Some(2));
        s.write(3 * WASM_PAGE, b"abc").unwrap();
        s.rollback();
        assert_eq!(s.size_pages(), 2);
        let mut b = [0u8; 5];
        s.read(10, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(s.read(2 * WASM_PAGE, &mut [0u8; 1]).is_err());
    }
}
