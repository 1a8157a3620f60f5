//! Finding cells for the tokens of a batch.

use std::collections::BTreeMap;

use super::cells::seq_bit;
use super::{KvCache, KvError};

/// The cells a batch's tokens were given: per table, one cell per token in batch order.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    cells: Vec<Vec<usize>>,
    active: Vec<usize>,
}

impl Placement {
    /// The cell of each token in table `table`.
    pub fn cells(&self, table: usize) -> &[usize] {
        &self.cells[table]
    }

    /// One past the last cell in use in table `table` once the batch is placed:
    /// attention need not look further.
    pub fn active(&self, table: usize) -> usize {
        self.active[table]
    }
}

/// Where each sequence of a batch starts, checked.
fn starts(
    cache: &KvCache,
    seqs: &[usize],
    positions: &[i32],
) -> Result<BTreeMap<usize, i32>, KvError> {
    let n_seq = cache.config.num_parallel;
    let mut start = BTreeMap::new();
    let mut prev: BTreeMap<usize, i32> = BTreeMap::new();
    for (&seq, &pos) in seqs.iter().zip(positions) {
        if seq >= n_seq {
            return Err(KvError::UnknownSequence { seq, n_seq });
        }
        if pos >= 0 && pos as usize >= cache.config.num_ctx {
            return Err(KvError::ContextFull {
                seq,
                pos: i64::from(pos),
                num_ctx: cache.config.num_ctx,
            });
        }
        match prev.get(&seq) {
            Some(&p) if pos != p + 1 => {
                return Err(KvError::NotConsecutive {
                    seq,
                    pos: i64::from(pos),
                    prev: i64::from(p),
                });
            }
            Some(_) => {}
            None => {
                let next = cache.seq_pos_max(seq).map_or(0, |m| m + 1);
                if pos < 0 || pos > next {
                    return Err(KvError::BadPosition {
                        seq,
                        pos: i64::from(pos),
                        next: i64::from(next),
                    });
                }
                start.insert(seq, pos);
            }
        }
        prev.insert(seq, pos);
    }
    Ok(start)
}

impl KvCache {
    /// Gives every token of a batch (sequence and position of each, in order) a cell in
    /// every table. A sequence's tokens must continue it (or rewrite it from some earlier
    /// position, which forgets everything from there on) with consecutive positions.
    /// On error nothing has changed.
    pub fn place(&mut self, seqs: &[usize], positions: &[i32]) -> Result<Placement, KvError> {
        assert_eq!(seqs.len(), positions.len(), "one position per token");
        if seqs.len() > self.config.num_batch {
            return Err(KvError::BatchTooLarge {
                len: seqs.len(),
                num_batch: self.config.num_batch,
            });
        }
        let start = starts(self, seqs, positions)?;
        self.check_windows(&start)?;
        let mut backup = None;
        for (&seq, &p) in &start {
            if self.seq_pos_max(seq).is_some_and(|m| m >= p) {
                backup.get_or_insert_with(|| {
                    self.tables
                        .iter()
                        .map(|t| t.cells.clone())
                        .collect::<Vec<_>>()
                });
                self.seq_rm(seq, p..i32::MAX);
            }
        }
        let mut placement = Placement::default();
        for t in 0..self.tables.len() {
            match self.place_in(t, &start, seqs, positions) {
                Ok(cells) => {
                    placement.cells.push(cells);
                    placement.active.push(self.tables[t].cells.active_len());
                }
                Err(e) => {
                    self.unplace(&placement);
                    if let Some(backup) = backup {
                        for (table, cells) in self.tables.iter_mut().zip(backup) {
                            table.cells = cells;
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(placement)
    }

    /// Frees the cells of a placement (a forward pass that failed).
    pub fn unplace(&mut self, placement: &Placement) {
        for (table, cells) in self.tables.iter_mut().zip(&placement.cells) {
            for &c in cells {
                table.cells.free(c);
            }
        }
    }

    /// True when `seq` can continue at `pos`: every sliding-window table still holds the
    /// window of keys a token there attends to. A prefix is reusable only if this holds.
    pub fn can_continue(&self, seq: usize, pos: i32) -> bool {
        self.check_windows(&BTreeMap::from([(seq, pos)])).is_ok()
    }

    /// Refuses a batch whose sequence continues at a position whose window a
    /// sliding-window table no longer holds in full.
    fn check_windows(&self, start: &BTreeMap<usize, i32>) -> Result<(), KvError> {
        let Some(full) = self.tables.iter().find(|t| t.window.is_none()) else {
            return Ok(());
        };
        for table in &self.tables {
            let Some(w) = table.window else { continue };
            for (&seq, &p) in start {
                let range = (p - w as i32 + 1).max(0)..p;
                if table.cells.count_in(seq, range.clone()) < full.cells.count_in(seq, range) {
                    return Err(KvError::WindowLost {
                        seq,
                        pos: i64::from(p),
                    });
                }
            }
        }
        Ok(())
    }

    fn place_in(
        &mut self,
        t: usize,
        start: &BTreeMap<usize, i32>,
        seqs: &[usize],
        positions: &[i32],
    ) -> Result<Vec<usize>, KvError> {
        let n = seqs.len();
        let table = &mut self.tables[t];
        if table.cells.len() - table.cells.used() < n
            && let Some(w) = table.window
        {
            let next: Vec<Option<i32>> = (0..self.config.num_parallel)
                .map(|s| {
                    start
                        .get(&s)
                        .copied()
                        .or_else(|| table.cells.pos_max(s).map(|m| m + 1))
                })
                .collect();
            table
                .cells
                .prune(|s| next.get(s).copied().flatten().map(|p| p - w as i32));
        }
        let free = table.cells.len() - table.cells.used();
        let cells = table.cells.find_free(n).ok_or(KvError::Full {
            needed: n,
            free,
            cells: table.cells.len(),
        })?;
        for ((&c, &seq), &pos) in cells.iter().zip(seqs).zip(positions) {
            table.cells.assign(c, pos, seq_bit(seq));
        }
        Ok(cells)
    }
}
