//! A plain key/value store: f32 keys and values per sequence, per layer, per position.
//!
//! Allocated once for `num_ctx` positions of each sequence. A sequence's cells are the
//! positions `0..len`; a batch may append at `len` or rewrite earlier positions (which
//! drops everything after them), never leave a gap. The quantized cache with cell
//! metadata comes later; this one is the reference the attention reads from.

use super::ModelError;

/// The shape of the keys and values a model stores per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    /// Layers with their own keys and values.
    pub n_layers: usize,
    /// Key values per token and layer (`head_count_kv * key_length`).
    pub k_dim: usize,
    /// Value values per token and layer (`head_count_kv * value_length`).
    pub v_dim: usize,
}

/// Keys and values of `n_seq` sequences of up to `num_ctx` positions each.
#[derive(Debug)]
pub struct KvStore {
    shape: KvShape,
    num_ctx: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
    lens: Vec<usize>,
}

impl KvStore {
    /// A store for `n_seq` sequences of `num_ctx` positions, allocated now.
    pub fn new(shape: KvShape, num_ctx: usize, n_seq: usize) -> Result<Self, ModelError> {
        let cells = n_seq
            .checked_mul(num_ctx)
            .and_then(|c| c.checked_mul(shape.n_layers))
            .ok_or(ModelError::KvTooLarge { num_ctx, n_seq })?;
        let k_len = cells.checked_mul(shape.k_dim);
        let v_len = cells.checked_mul(shape.v_dim);
        let (Some(k_len), Some(v_len)) = (k_len, v_len) else {
            return Err(ModelError::KvTooLarge { num_ctx, n_seq });
        };
        Ok(Self {
            shape,
            num_ctx,
            keys: vec![0.0; k_len],
            values: vec![0.0; v_len],
            lens: vec![0; n_seq],
        })
    }

    /// The per-token shape.
    pub fn shape(&self) -> KvShape {
        self.shape
    }

    /// Positions per sequence.
    pub fn num_ctx(&self) -> usize {
        self.num_ctx
    }

    /// Number of sequences.
    pub fn n_seq(&self) -> usize {
        self.lens.len()
    }

    /// Bytes held by keys and values.
    pub fn bytes(&self) -> usize {
        (self.keys.len() + self.values.len()) * size_of::<f32>()
    }

    /// Positions filled in sequence `seq` (0 for a sequence that does not exist).
    pub fn seq_len(&self, seq: usize) -> usize {
        self.lens.get(seq).copied().unwrap_or(0)
    }

    /// Forgets the positions of `seq` from `len` on.
    pub fn truncate(&mut self, seq: usize, len: usize) {
        if let Some(l) = self.lens.get_mut(seq) {
            *l = (*l).min(len);
        }
    }

    /// Forgets every position of every sequence.
    pub fn clear(&mut self) {
        self.lens.fill(0);
    }

    /// Checks that tokens at `positions` of sequences `seqs`, in this order, can be
    /// stored: known sequence, position inside the context, no gap. Returns the length
    /// each sequence will have afterwards.
    pub(crate) fn plan(&self, seqs: &[usize], positions: &[i32]) -> Result<Vec<usize>, ModelError> {
        let mut lens = self.lens.clone();
        for (&seq, &pos) in seqs.iter().zip(positions) {
            let n_seq = lens.len();
            let len = lens
                .get_mut(seq)
                .ok_or(ModelError::UnknownSequence { seq, n_seq })?;
            let p = usize::try_from(pos).map_err(|_| ModelError::BadPosition {
                seq,
                pos: i64::from(pos),
                len: *len,
            })?;
            if p >= self.num_ctx {
                return Err(ModelError::ContextFull {
                    seq,
                    num_ctx: self.num_ctx,
                });
            }
            if p > *len {
                return Err(ModelError::BadPosition {
                    seq,
                    pos: i64::from(pos),
                    len: *len,
                });
            }
            *len = p + 1;
        }
        Ok(lens)
    }

    /// Sets every sequence's length, as [`KvStore::plan`] computed.
    pub(crate) fn commit(&mut self, lens: Vec<usize>) {
        self.lens = lens;
    }

    fn cell(&self, layer: usize, seq: usize, pos: usize) -> usize {
        (seq * self.shape.n_layers + layer) * self.num_ctx + pos
    }

    /// Stores the key and value of the token at `pos` of `seq` in `layer`.
    pub(crate) fn write(&mut self, layer: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]) {
        let cell = self.cell(layer, seq, pos);
        let (kd, vd) = (self.shape.k_dim, self.shape.v_dim);
        self.keys[cell * kd..(cell + 1) * kd].copy_from_slice(k);
        self.values[cell * vd..(cell + 1) * vd].copy_from_slice(v);
    }

    /// The keys and values of positions `0..n` of `seq` in `layer`, position after
    /// position.
    pub(crate) fn read(&self, layer: usize, seq: usize, n: usize) -> (&[f32], &[f32]) {
        let cell = self.cell(layer, seq, 0);
        let (kd, vd) = (self.shape.k_dim, self.shape.v_dim);
        (
            &self.keys[cell * kd..(cell + n) * kd],
            &self.values[cell * vd..(cell + n) * vd],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> KvStore {
        let shape = KvShape {
            n_layers: 2,
            k_dim: 3,
            v_dim: 2,
        };
        KvStore::new(shape, 4, 2).unwrap()
    }

    #[test]
    fn plan_appends_and_rewinds_without_gaps() {
        let mut kv = store();
        let lens = kv.plan(&[0, 0, 1], &[0, 1, 0]).unwrap();
        assert_eq!(lens, vec![2, 1]);
        kv.commit(lens);
        assert_eq!(kv.seq_len(0), 2);
        // Rewriting position 1 of sequence 0 keeps it at length 2.
        assert_eq!(kv.plan(&[0], &[1]).unwrap(), vec![2, 1]);
        // Rewinding to position 0 drops position 1.
        assert_eq!(kv.plan(&[0], &[0]).unwrap(), vec![1, 1]);
    }

    #[test]
    fn plan_rejects_gaps_negative_positions_full_context_and_unknown_sequences() {
        let kv = store();
        assert!(matches!(
            kv.plan(&[0], &[1]),
            Err(ModelError::BadPosition {
                seq: 0,
                pos: 1,
                len: 0
            })
        ));
        assert!(matches!(
            kv.plan(&[0], &[-1]),
            Err(ModelError::BadPosition { pos: -1, .. })
        ));
        assert!(matches!(
            kv.plan(&[1; 5], &[0, 1, 2, 3, 4]),
            Err(ModelError::ContextFull { seq: 1, num_ctx: 4 })
        ));
        assert!(matches!(
            kv.plan(&[2], &[0]),
            Err(ModelError::UnknownSequence { seq: 2, n_seq: 2 })
        ));
    }

    #[test]
    fn writes_land_in_their_own_layer_sequence_and_position() {
        let mut kv = store();
        kv.write(1, 1, 2, &[1.0, 2.0, 3.0], &[4.0, 5.0]);
        let (k, v) = kv.read(1, 1, 3);
        assert_eq!(&k[6..9], &[1.0, 2.0, 3.0]);
        assert_eq!(&v[4..6], &[4.0, 5.0]);
        let (k0, _) = kv.read(0, 1, 3);
        assert!(k0.iter().all(|&x| x == 0.0));
        let (k_other, _) = kv.read(1, 0, 3);
        assert!(k_other.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn an_impossible_size_is_an_error() {
        let shape = KvShape {
            n_layers: usize::MAX,
            k_dim: 2,
            v_dim: 2,
        };
        assert!(matches!(
            KvStore::new(shape, 1 << 20, 4),
            Err(ModelError::KvTooLarge { .. })
        ));
    }
}
