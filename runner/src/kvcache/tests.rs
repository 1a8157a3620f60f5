use super::layer_view::Gathered;
use super::*;

fn layout(windows: Vec<Option<usize>>) -> KvLayout {
    KvLayout {
        k_dim: 64,
        v_dim: 64,
        head_dim_k: 32,
        head_dim_v: 32,
        windows,
    }
}

fn config(num_ctx: usize, num_parallel: usize, num_batch: usize) -> KvConfig {
    KvConfig {
        num_parallel,
        num_batch,
        ..KvConfig::reference(num_ctx)
    }
}

fn cache(num_ctx: usize, num_parallel: usize) -> KvCache {
    KvCache::new(layout(vec![None, None]), config(num_ctx, num_parallel, 64)).unwrap()
}

/// Places `n` tokens of `seq` from `first` on and writes rows whose values are the
/// position (keys) and minus the position (values).
fn feed(cache: &mut KvCache, seq: usize, first: i32, n: usize) -> Result<Placement, KvError> {
    let seqs = vec![seq; n];
    let positions: Vec<i32> = (first..first + n as i32).collect();
    let placement = cache.place(&seqs, &positions)?;
    let k: Vec<f32> = positions
        .iter()
        .flat_map(|&p| std::iter::repeat_n(p as f32, 64))
        .collect();
    let v: Vec<f32> = k.iter().map(|x| -x).collect();
    for layer in 0..cache.layout().windows.len() {
        cache.write(layer, &placement, &k, &v)?;
    }
    Ok(placement)
}

fn positions_of(cache: &KvCache, layer: usize, seq: usize) -> Vec<i32> {
    let view = cache.layer(layer);
    let mut p: Vec<i32> = (0..view.n_cells())
        .filter(|&c| view.seqs[c] & (1 << seq) != 0)
        .map(|c| view.pos[c])
        .collect();
    p.sort();
    p
}

#[test]
fn tokens_append_and_a_rewrite_forgets_what_followed() {
    let mut kv = cache(16, 1);
    feed(&mut kv, 0, 0, 5).unwrap();
    assert_eq!(kv.seq_pos_max(0), Some(4));
    feed(&mut kv, 0, 5, 1).unwrap();
    feed(&mut kv, 0, 2, 1).unwrap();
    assert_eq!(positions_of(&kv, 0, 0), vec![0, 1, 2]);
    assert_eq!(kv.cells_used(), 3);
}

#[test]
fn bad_batches_are_refused_and_change_nothing() {
    let mut kv = cache(8, 2);
    feed(&mut kv, 0, 0, 3).unwrap();
    let err = |kv: &mut KvCache, seqs: &[usize], pos: &[i32]| kv.place(seqs, pos).unwrap_err();
    assert!(matches!(
        err(&mut kv, &[0], &[4]),
        KvError::BadPosition {
            pos: 4,
            next: 3,
            ..
        }
    ));
    assert!(matches!(
        err(&mut kv, &[0], &[-1]),
        KvError::BadPosition { .. }
    ));
    assert!(matches!(
        err(&mut kv, &[1, 1], &[0, 2]),
        KvError::NotConsecutive { .. }
    ));
    assert!(matches!(
        err(&mut kv, &[2], &[0]),
        KvError::UnknownSequence { seq: 2, n_seq: 2 }
    ));
    assert!(matches!(
        err(&mut kv, &[0], &[8]),
        KvError::ContextFull { num_ctx: 8, .. }
    ));
    let big = KvCache::new(layout(vec![None]), config(128, 1, 4));
    let mut big = big.unwrap();
    assert!(matches!(
        big.place(&[0; 5], &[0, 1, 2, 3, 4]),
        Err(KvError::BatchTooLarge {
            len: 5,
            num_batch: 4
        })
    ));
    // A rewrite that fails keeps the old positions.
    assert!(kv.place(&[0, 0], &[1, 3]).is_err());
    assert_eq!(positions_of(&kv, 0, 0), vec![0, 1, 2]);
}

#[test]
fn a_shared_prefix_takes_no_cells_and_outlives_its_first_owner() {
    let mut kv = cache(32, 2);
    feed(&mut kv, 0, 0, 10).unwrap();
    kv.seq_cp(0, 1, 0..6);
    assert_eq!(kv.cells_used(), 10);
    feed(&mut kv, 1, 6, 2).unwrap();
    assert_eq!(kv.cells_used(), 12);
    kv.seq_rm(0, 0..i32::MAX);
    assert_eq!(positions_of(&kv, 1, 1), (0..8).collect::<Vec<_>>());
    assert_eq!(kv.cells_used(), 8);
    let mut g = Gathered::default();
    kv.layer(1).gather(1, 0, 8, 64, 64, &mut g).unwrap();
    assert!(g.present.iter().all(|&p| p));
    assert_eq!(g.k[5 * 64], 5.0);
    assert_eq!(g.v[7 * 64], -7.0);
    kv.clear();
    assert_eq!(kv.cells_used(), 0);
    assert_eq!(kv.seq_pos_max(1), None);
}

#[test]
fn the_context_shift_keeps_the_start_drops_half_and_rotates_the_rest() {
    let mut kv = cache(32, 1);
    feed(&mut kv, 0, 0, 20).unwrap();
    assert!(!kv.has_pending_shifts());
    // Keep 4; of the other 16, drop 8 (positions 4..12) and move 12..20 down to 4..12.
    assert_eq!(kv.context_shift(0, 4).unwrap(), 8);
    assert_eq!(positions_of(&kv, 0, 0), (0..12).collect::<Vec<_>>());
    assert!(kv.has_pending_shifts());
    let mut seen = Vec::new();
    kv.apply_shifts(|layer, delta, row: &mut [f32]| {
        seen.push((layer, delta));
        // Keys hold their position: "rotating" by adding the shift makes each key hold
        // its new position, so the test sees every row went through once.
        for x in row.iter_mut() {
            *x += delta as f32;
        }
        Ok::<(), KvError>(())
    })
    .unwrap();
    assert!(!kv.has_pending_shifts());
    assert_eq!(seen.len(), 2 * 8);
    assert!(seen.iter().all(|&(_, d)| d == -8));
    let mut g = Gathered::default();
    kv.layer(0).gather(0, 0, 12, 64, 64, &mut g).unwrap();
    // Position 5 held the key of old position 13, moved down by 8: 13 - 8 = 5.
    assert_eq!(g.k[5 * 64], 5.0);
    assert_eq!(g.k[3 * 64], 3.0);
    // Values are not touched.
    assert_eq!(g.v[5 * 64], -13.0);
    // Next token continues at position 12.
    feed(&mut kv, 0, 12, 1).unwrap();
}

#[test]
fn shifting_a_shared_cell_copies_it_so_the_other_sequence_keeps_its_positions() {
    let mut kv = cache(32, 2);
    feed(&mut kv, 0, 0, 10).unwrap();
    kv.seq_cp(0, 1, 0..10);
    kv.seq_shift(1, 5..10, 3).unwrap();
    assert_eq!(positions_of(&kv, 0, 0), (0..10).collect::<Vec<_>>());
    assert_eq!(
        positions_of(&kv, 0, 1),
        vec![0, 1, 2, 3, 4, 8, 9, 10, 11, 12]
    );
    assert_eq!(kv.cells_used(), 15);
    let mut g = Gathered::default();
    kv.layer(0).gather(1, 8, 5, 64, 64, &mut g).unwrap();
    assert_eq!(g.v[0], -5.0, "the copy carries the original values");
}

#[test]
fn a_sliding_window_table_reuses_cells_and_refuses_to_rewind_past_what_it_dropped() {
    let (w, batch) = (4, 2);
    let mut kv = KvCache::new(layout(vec![Some(w), None]), config(64, 1, batch)).unwrap();
    // One sequence: w - 1 old positions plus a batch.
    assert_eq!(kv.layer(0).n_cells(), w - 1 + batch);
    assert_eq!(kv.layer(1).n_cells(), 64);
    for p in 0..30 {
        feed(&mut kv, 0, p, 1).unwrap();
    }
    let swa = positions_of(&kv, 0, 0);
    assert!(
        swa.len() <= w - 1 + batch && swa.ends_with(&[26, 27, 28, 29]),
        "{swa:?}"
    );
    assert_eq!(positions_of(&kv, 1, 0).len(), 30);
    assert_eq!(kv.seq_pos_min(0), Some(*swa.first().unwrap()));
    // Rewriting the last position is fine: its window is still held.
    feed(&mut kv, 0, 29, 1).unwrap();
    // Rewinding to 10 needs 7..10, long gone from the window table.
    assert!(matches!(
        feed(&mut kv, 0, 10, 1),
        Err(KvError::WindowLost { seq: 0, pos: 10 })
    ));
    assert_eq!(positions_of(&kv, 1, 0).len(), 30, "nothing was forgotten");
}

#[test]
fn a_window_as_long_as_the_context_needs_no_table_of_its_own() {
    let kv = KvCache::new(layout(vec![Some(64), None]), config(64, 2, 8)).unwrap();
    assert_eq!(kv.layer(0).table, kv.layer(1).table);
    assert_eq!(kv.layer(0).window, None);
}

#[test]
fn rows_come_back_within_their_types_precision() {
    for ty in CacheType::ALL {
        let cfg = KvConfig {
            type_k: ty,
            type_v: ty,
            ..config(8, 1, 8)
        };
        let mut kv = KvCache::new(layout(vec![None]), cfg).unwrap();
        let placement = kv.place(&[0, 0], &[0, 1]).unwrap();
        let k: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
        let v: Vec<f32> = (0..128).map(|i| (i as f32 * 0.91).cos()).collect();
        kv.write(0, &placement, &k, &v).unwrap();
        let mut g = Gathered::default();
        kv.layer(0).gather(0, 0, 2, 64, 64, &mut g).unwrap();
        let err =
            g.k.iter()
                .zip(&k)
                .chain(g.v.iter().zip(&v))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
        let budget = match ty {
            CacheType::F32 => 0.0,
            CacheType::F16 => 1e-3,
            CacheType::Q8_0 => 1e-2,
            _ => 0.15,
        };
        assert!(err <= budget, "{ty}: error {err}");
        let contiguous = kv.layer(0).contiguous_f32(0, 0, 2);
        assert_eq!(contiguous.is_some(), ty == CacheType::F32, "{ty}");
    }
}

#[test]
fn bytes_are_exact_and_quantized_types_take_their_share() {
    let l = KvLayout {
        k_dim: 8 * 128,
        v_dim: 8 * 128,
        head_dim_k: 128,
        head_dim_v: 128,
        windows: vec![None; 32],
    };
    let bytes = |k, v| {
        let cfg = KvConfig {
            type_k: k,
            type_v: v,
            ..config(32768, 1, 512)
        };
        let b = KvCache::bytes_for(&l, &cfg).unwrap();
        (b.k + b.v) as f64
    };
    let f16 = bytes(CacheType::F16, CacheType::F16);
    assert_eq!(f16, 2.0 * 32.0 * 32768.0 * 1024.0 * 2.0);
    let q8 = bytes(CacheType::Q8_0, CacheType::Q8_0) / f16;
    let q8_q4 = bytes(CacheType::Q8_0, CacheType::Q4_0) / f16;
    assert!((q8 - 34.0 / 64.0).abs() < 1e-9, "{q8}");
    assert!((q8_q4 - 52.0 / 128.0).abs() < 1e-9, "{q8_q4}");
    let small = KvCache::new(layout(vec![None, Some(8)]), config(64, 2, 16)).unwrap();
    assert_eq!(
        KvCache::bytes_for(small.layout(), small.config()).unwrap(),
        small.bytes()
    );
}

#[test]
fn impossible_configurations_say_what_to_change() {
    let err = |l: KvLayout, c: KvConfig| KvCache::new(l, c).unwrap_err().to_string();
    let odd = KvLayout {
        k_dim: 2 * 48,
        v_dim: 2 * 48,
        head_dim_k: 48,
        head_dim_v: 48,
        windows: vec![None],
    };
    let msg = err(
        odd.clone(),
        KvConfig {
            type_v: CacheType::Q4_0,
            ..config(8, 1, 8)
        },
    );
    assert!(
        msg.contains("V cache type q4_0") && msg.contains("48"),
        "{msg}"
    );
    assert!(KvCache::new(odd, config(8, 1, 8)).is_ok());
    let msg = err(layout(vec![None]), config(8, 65, 8));
    assert!(msg.contains("num_parallel is 65"), "{msg}");
    let msg = err(layout(vec![None]), config(0, 1, 8));
    assert!(msg.contains("num_ctx is 0"), "{msg}");
}

/// The GPU for the device-cache tests, or `None` after a printed skip.
fn gpu() -> Option<std::sync::Arc<gpu::Gpu>> {
    gpu::testing::gpu_or_skip()?;
    Some(std::sync::Arc::new(
        gpu::Gpu::open(gpu::DeviceSpec::Gpu).unwrap().unwrap(),
    ))
}

/// [`feed`] for a cache on either side: rows written through `device::edit_rows`, as
/// the GPU pass would have stored them.
fn feed_any(kv: &mut KvCache, seq: usize, first: i32, n: usize) {
    let seqs = vec![seq; n];
    let positions: Vec<i32> = (first..first + n as i32).collect();
    let placement = kv.place(&seqs, &positions).unwrap();
    let (kr, vr) = (kv.k_row, kv.v_row);
    let (tk, tv) = (kv.config.type_k.ggml(), kv.config.type_v.ggml());
    let device = kv.device.clone();
    for l in &mut kv.layers {
        let cells = placement.cells(l.table).to_vec();
        for (rows, row_bytes, ty, sign) in [(&mut l.k, kr, tk, 1.0), (&mut l.v, vr, tv, -1.0)] {
            device::edit_rows(device.as_ref(), rows, |bytes: &mut [u8]| {
                for (&c, &p) in cells.iter().zip(&positions) {
                    let row: Vec<f32> = (0..64)
                        .map(|i| sign * (p as f32 + i as f32 / 64.0))
                        .collect();
                    quantize_row(ty, &row, &mut bytes[c * row_bytes..(c + 1) * row_bytes])?;
                }
                Ok::<(), KvError>(())
            })
            .unwrap();
        }
    }
}

/// Every layer's key and value bytes, read back from wherever they live.
fn all_rows(kv: &mut KvCache) -> Vec<Vec<u8>> {
    let device = kv.device.clone();
    let mut out = Vec::new();
    for l in &mut kv.layers {
        for rows in [&mut l.k, &mut l.v] {
            device::edit_rows(device.as_ref(), rows, |bytes: &mut [u8]| {
                out.push(bytes.to_vec());
                Ok::<(), KvError>(())
            })
            .unwrap();
        }
    }
    out
}

/// A cache on the GPU copies shared cells and re-rotates shifted keys as the host cache
/// does: the same operations leave the same bytes, for a plain and a quantized type.
#[test]
fn a_device_cache_shifts_and_copies_cells_as_the_host_cache_does() {
    let Some(gpu) = gpu() else { return };
    for ty in [CacheType::F16, CacheType::Q8_0] {
        let kv_config = KvConfig {
            type_k: ty,
            type_v: ty,
            ..config(32, 2, 64)
        };
        let mut host = KvCache::new(layout(vec![None, Some(8)]), kv_config).unwrap();
        let mut device =
            KvCache::new_on_device(layout(vec![None, Some(8)]), kv_config, gpu.clone()).unwrap();
        assert!(device.device().is_some() && device.device_layer(0).is_some());
        assert!(host.device_layer(0).is_none());
        assert_eq!(device.k_rotation(), None, "the GPU stores keys unrotated");
        for kv in [&mut host, &mut device] {
            feed_any(kv, 0, 0, 20);
            kv.seq_cp(0, 1, 0..20);
            kv.seq_shift(1, 10..20, 2).unwrap();
            kv.context_shift(0, 4).unwrap();
            kv.apply_shifts(|layer, delta, row: &mut [f32]| {
                for (i, x) in row.iter_mut().enumerate() {
                    *x += (delta * (layer as i32 + 1)) as f32 + i as f32 * 0.01;
                }
                Ok::<(), KvError>(())
            })
            .unwrap();
        }
        assert_eq!(all_rows(&mut host), all_rows(&mut device), "{ty:?}");
        let error = device
            .write(0, &host.place(&[0], &[12]).unwrap(), &[0.0; 64], &[0.0; 64])
            .unwrap_err();
        assert!(matches!(error, KvError::Device(_)), "{error}");
    }
}

/// A type the GPU kernels do not store is refused when the cache is made, with the way
/// out in the message.
#[test]
fn a_device_cache_refuses_types_the_gpu_does_not_store() {
    let Some(gpu) = gpu() else { return };
    let kv_config = KvConfig {
        type_v: CacheType::Iq4Nl,
        ..config(32, 1, 8)
    };
    let error = KvCache::new_on_device(layout(vec![None]), kv_config, gpu).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("iq4_nl") && message.contains("OLLAMA_DEVICE=cpu"),
        "{message}"
    );
}
