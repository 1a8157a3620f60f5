//! The cells of one cache table: which position each holds and which sequences use it.
//!
//! A cell is empty when no sequence uses it. Several sequences may use one cell (a shared
//! prompt prefix), so each cell has a set of sequences, a 64-bit mask. A pending shift
//! records how far a cell's key must still be rotated after its position moved.

use plan::kv::MAX_SEQUENCES;

// A cell's set of sequences is a u64: one bit for each sequence a cache may hold.
const _: () = assert!(MAX_SEQUENCES == u64::BITS as usize);

/// Position and sequence set of every cell of one table.
#[derive(Debug, Clone)]
pub(crate) struct CellTable {
    pos: Vec<i32>,
    seqs: Vec<u64>,
    shift: Vec<i32>,
    /// Some cell has a rotation waiting (kept so a forward pass need not scan).
    pending: bool,
    used: usize,
    head: usize,
}

/// The bit of sequence `seq` in a cell's set.
pub(crate) fn seq_bit(seq: usize) -> u64 {
    1u64 << seq
}

impl CellTable {
    /// `n` empty cells.
    pub fn new(n: usize) -> Self {
        Self {
            pos: vec![-1; n],
            seqs: vec![0; n],
            shift: vec![0; n],
            pending: false,
            used: 0,
            head: 0,
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    /// Cells some sequence uses.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Each cell's position (meaningless for empty cells).
    pub fn positions(&self) -> &[i32] {
        &self.pos
    }

    /// Each cell's set of sequences (0 for empty cells).
    pub fn seq_sets(&self) -> &[u64] {
        &self.seqs
    }

    /// One past the last cell in use.
    pub fn active_len(&self) -> usize {
        self.seqs.iter().rposition(|&s| s != 0).map_or(0, |c| c + 1)
    }

    /// Bytes of metadata.
    pub fn bytes(&self) -> usize {
        self.pos.capacity() * 4 + self.seqs.capacity() * 8 + self.shift.capacity() * 4
    }

    /// The cells `seq` uses, with their positions.
    pub fn cells_of(&self, seq: usize) -> impl Iterator<Item = (usize, i32)> + '_ {
        let bit = seq_bit(seq);
        self.seqs
            .iter()
            .enumerate()
            .filter(move |&(_, s)| s & bit != 0)
            .map(|(c, _)| (c, self.pos[c]))
    }

    /// The highest position `seq` holds.
    pub fn pos_max(&self, seq: usize) -> Option<i32> {
        self.cells_of(seq).map(|(_, p)| p).max()
    }

    /// The lowest position `seq` holds.
    pub fn pos_min(&self, seq: usize) -> Option<i32> {
        self.cells_of(seq).map(|(_, p)| p).min()
    }

    /// Number of positions in `range` that `seq` holds.
    pub fn count_in(&self, seq: usize, range: std::ops::Range<i32>) -> usize {
        self.cells_of(seq)
            .filter(|(_, p)| range.contains(p))
            .count()
    }

    fn drop_seq(&mut self, c: usize, bit: u64) {
        if self.seqs[c] & bit != 0 {
            self.seqs[c] &= !bit;
            if self.seqs[c] == 0 {
                self.pos[c] = -1;
                self.shift[c] = 0;
                self.used -= 1;
            }
        }
    }

    /// `seq` stops using its cells at positions in `range`.
    pub fn remove(&mut self, seq: usize, range: std::ops::Range<i32>) {
        let bit = seq_bit(seq);
        for c in 0..self.len() {
            if self.seqs[c] & bit != 0 && range.contains(&self.pos[c]) {
                self.drop_seq(c, bit);
            }
        }
    }

    /// Every sequence stops using cell `c`.
    pub fn free(&mut self, c: usize) {
        if self.seqs[c] != 0 {
            self.seqs[c] = 0;
            self.pos[c] = -1;
            self.shift[c] = 0;
            self.used -= 1;
        }
    }

    /// `dst` uses every cell `src` uses at positions in `range` (no data is copied).
    pub fn share(&mut self, src: usize, dst: usize, range: std::ops::Range<i32>) {
        let (s, d) = (seq_bit(src), seq_bit(dst));
        for c in 0..self.len() {
            if self.seqs[c] & s != 0 && range.contains(&self.pos[c]) {
                self.seqs[c] |= d;
            }
        }
    }

    /// Empties every cell.
    pub fn clear(&mut self) {
        self.pos.fill(-1);
        self.seqs.fill(0);
        self.shift.fill(0);
        self.pending = false;
        self.used = 0;
        self.head = 0;
    }

    /// The cells of `seq` in `range` that other sequences use too.
    pub fn shared_cells(&self, seq: usize, range: std::ops::Range<i32>) -> Vec<usize> {
        let bit = seq_bit(seq);
        self.cells_of(seq)
            .filter(|&(c, p)| range.contains(&p) && self.seqs[c] != bit)
            .map(|(c, _)| c)
            .collect()
    }

    /// Moves `seq` from cell `from` to the empty cell `to` (whose data the caller copied).
    pub fn move_seq(&mut self, seq: usize, from: usize, to: usize) {
        let bit = seq_bit(seq);
        debug_assert_eq!(self.seqs[to], 0);
        self.assign(to, self.pos[from], bit);
        self.shift[to] = self.shift[from];
        self.drop_seq(from, bit);
    }

    /// Moves the positions of `seq` in `range` by `delta`, recording the rotation its keys
    /// still need; positions that become negative are removed. The caller has made sure
    /// `seq` uses these cells alone.
    pub fn shift(&mut self, seq: usize, range: std::ops::Range<i32>, delta: i32) {
        let bit = seq_bit(seq);
        for c in 0..self.len() {
            if self.seqs[c] & bit != 0 && range.contains(&self.pos[c]) {
                self.pos[c] += delta;
                self.shift[c] += delta;
                self.pending = true;
                if self.pos[c] < 0 {
                    self.drop_seq(c, bit);
                }
            }
        }
    }

    /// Cells whose keys still need rotating, with the angle (in positions) for each.
    pub fn pending_shifts(&self) -> impl Iterator<Item = (usize, i32)> + '_ {
        self.shift
            .iter()
            .enumerate()
            .filter(|&(c, &d)| d != 0 && self.seqs[c] != 0)
            .map(|(c, &d)| (c, d))
    }

    /// True when some cell's key waits for a rotation.
    pub fn has_pending(&self) -> bool {
        self.pending
    }

    /// Forgets every pending rotation (they were applied).
    pub fn shifts_applied(&mut self) {
        self.shift.fill(0);
        self.pending = false;
    }

    /// Frees, for each sequence `s`, the cells it no longer needs: positions at or below
    /// `horizon(s)` (a sliding window that has moved past them).
    pub fn prune(&mut self, horizon: impl Fn(usize) -> Option<i32>) {
        let horizons: Vec<Option<i32>> = (0..MAX_SEQUENCES).map(&horizon).collect();
        for c in 0..self.len() {
            let mut set = self.seqs[c];
            while set != 0 {
                let s = set.trailing_zeros() as usize;
                set &= set - 1;
                if horizons[s].is_some_and(|h| self.pos[c] <= h) {
                    self.drop_seq(c, seq_bit(s));
                }
            }
        }
    }

    /// `n` empty cells, searched from where the last search ended; `None` when fewer
    /// than `n` are empty.
    pub fn find_free(&mut self, n: usize) -> Option<Vec<usize>> {
        if self.len() - self.used < n {
            return None;
        }
        let len = self.len();
        let mut found = Vec::with_capacity(n);
        let mut c = self.head;
        while found.len() < n {
            if self.seqs[c] == 0 {
                found.push(c);
            }
            c = (c + 1) % len;
        }
        self.head = c;
        Some(found)
    }

    /// Cell `c` (empty) now holds position `pos` of the sequences in `set`.
    pub fn assign(&mut self, c: usize, pos: i32, set: u64) {
        debug_assert!(self.seqs[c] == 0 && set != 0);
        self.pos[c] = pos;
        self.seqs[c] = set;
        self.shift[c] = 0;
        self.used += 1;
    }
}
