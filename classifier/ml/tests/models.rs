//! Committed models against committed held-out rows, without Python: parity with the training
//! pipeline's outputs, quality floors, explanations, load errors, modes and calibration.

use std::path::{Path, PathBuf};

use septa_features::{N_FEATURES, featurize};
use septa_ml::heldout::{self, Row};
use septa_ml::{Engine, MlConfig, MlError, MlEvent, Mode, Model, ModelKind};

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/models")
}

fn rows() -> Vec<Row> {
    heldout::load(&model_dir().join("heldout-v1.json")).expect("committed held-out rows")
}

fn load(name: &str) -> Model {
    Model::load(&model_dir().join(name)).expect("committed model loads")
}

fn feats(rows: &[Row]) -> Vec<[f32; N_FEATURES]> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| featurize(&r.record(i)))
        .collect()
}

/// Mann–Whitney ROC AUC (ties count half).
fn roc_auc(scores: &[f32], labels: &[u8]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        idx[i..=j].iter().for_each(|&k| ranks[k] = r);
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    let rank_sum: f64 = (0..labels.len())
        .filter(|&k| labels[k] == 1)
        .map(|k| ranks[k])
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[test]
fn rust_features_match_the_training_pipeline() {
    let rows = rows();
    assert!(rows.len() >= 500);
    for (i, r) in rows.iter().enumerate() {
        let v = featurize(&r.record(i));
        for (k, (a, b)) in v.iter().zip(&r.features).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "row {i} feature {k}: rust {a} python {b}"
            );
        }
    }
}

#[test]
fn tract_outputs_match_the_training_pipeline() {
    let rows = rows();
    let x = feats(&rows);
    let clf = load("septa-flow-mlp-v1.json");
    let ae = load("septa-flow-ae-v1.json");
    let mut c = Vec::new();
    clf.run(&x, &mut c).unwrap();
    let mut a = Vec::new();
    ae.run(&x, &mut a).unwrap();
    assert_eq!(c.len(), rows.len());
    assert_eq!(a.len(), rows.len() * N_FEATURES);
    let mut top_agree = 0;
    for (i, r) in rows.iter().enumerate() {
        assert!(
            (c[i] - r.classifier_logit).abs() <= 1e-4 * r.classifier_logit.abs().max(1.0),
            "row {i}: classifier logit {} vs {}",
            c[i],
            r.classifier_logit
        );
        let errs = &a[i * N_FEATURES..(i + 1) * N_FEATURES];
        let mean = errs.iter().sum::<f32>() / N_FEATURES as f32;
        assert!(
            (mean - r.autoencoder).abs() <= 1e-4 * r.autoencoder.max(1.0),
            "row {i}: autoencoder {mean} vs {}",
            r.autoencoder
        );
        let top = (0..N_FEATURES)
            .max_by(|&p, &q| errs[p].total_cmp(&errs[q]))
            .unwrap();
        top_agree += usize::from(top == r.autoencoder_top);
    }
    // argmax may flip between near-equal errors; nearly all must agree.
    assert!(
        top_agree * 100 >= rows.len() * 99,
        "{top_agree}/{}",
        rows.len()
    );
}

#[test]
fn batch_size_does_not_change_scores() {
    let rows = rows();
    let x = feats(&rows[..64]);
    let clf = load("septa-flow-mlp-v1.json");
    let mut whole = Vec::new();
    clf.scores(&x, &mut whole).unwrap();
    let mut probs = Vec::new();
    clf.scores(&x, &mut probs).unwrap();
    for (p, r) in probs.iter().zip(&rows) {
        assert!((p - r.classifier).abs() <= 1e-5, "{p} vs {}", r.classifier);
    }
    let mut one_by_one = Vec::new();
    for v in &x {
        clf.scores(std::slice::from_ref(v), &mut one_by_one)
            .unwrap();
    }
    for (a, b) in whole.iter().zip(&one_by_one) {
        assert!((a - b).abs() < 1e-6);
    }
}

fn quality(name: &str, auc_floor: f64, fpr_ceiling: f64, tpr_floor: f64) {
    let rows = rows();
    let m = load(name);
    let mut s = Vec::new();
    m.scores(&feats(&rows), &mut s).unwrap();
    let labels: Vec<u8> = rows.iter().map(|r| r.label).collect();
    let auc = roc_auc(&s, &labels);
    let thr = m.meta.threshold;
    let rate = |l: u8| {
        let (hit, n) = s
            .iter()
            .zip(&labels)
            .filter(|(_, x)| **x == l)
            .fold((0, 0), |(h, n), (v, _)| (h + usize::from(*v > thr), n + 1));
        hit as f64 / n as f64
    };
    let (fpr, tpr) = (rate(0), rate(1));
    println!(
        "{name}: held-out rows={} roc_auc={auc:.4} fpr={fpr:.4} tpr={tpr:.4} threshold={thr}",
        rows.len()
    );
    assert!(auc >= auc_floor, "{name}: ROC AUC {auc}");
    assert!(fpr <= fpr_ceiling, "{name}: FPR {fpr}");
    assert!(tpr >= tpr_floor, "{name}: TPR {tpr}");
}

#[test]
fn classifier_quality_on_held_out_rows() {
    quality("septa-flow-mlp-v1.json", 0.99, 0.02, 0.95);
}

#[test]
fn autoencoder_quality_on_held_out_rows() {
    quality("septa-flow-ae-v1.json", 0.97, 0.03, 0.85);
}

fn engine(mode: Mode) -> Engine {
    let mut cfg = MlConfig::new(model_dir());
    cfg.mode = mode;
    Engine::load(cfg).unwrap()
}

fn alerts_for(profile: &str, mode: Mode) -> Vec<MlEvent> {
    let rows = rows();
    let recs: Vec<_> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.profile == profile)
        .map(|(i, r)| r.record(i))
        .collect();
    assert!(!recs.is_empty(), "no held-out rows of {profile}");
    let mut e = engine(mode);
    let mut ev = Vec::new();
    e.score_batch(&recs, &mut ev).unwrap();
    ev
}

fn summaries(ev: &[MlEvent], model_prefix: &str) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e {
            MlEvent::Alert(a) if a.model_id.starts_with(model_prefix) => Some(a.summary.clone()),
            _ => None,
        })
        .collect()
}

fn mostly(texts: &[String], needle: &str) {
    let hits = texts.iter().filter(|t| t.contains(needle)).count();
    assert!(!texts.is_empty());
    assert!(
        hits * 10 >= texts.len() * 7,
        "{hits}/{} mention {needle:?}: {:#?}",
        texts.len(),
        &texts[..texts.len().min(5)]
    );
}

#[test]
fn explanations_name_what_is_abnormal() {
    let ev = alerts_for("lateral_sweep", Mode::Shadow);
    mostly(&summaries(&ev, "septa-flow-mlp"), "fan-out to");
    let ev = alerts_for("s7_stop", Mode::Shadow);
    mostly(
        &summaries(&ev, "septa-flow-mlp"),
        "restart/stop/program commands",
    );
    let ev = alerts_for("modbus_write_storm", Mode::Shadow);
    mostly(&summaries(&ev, "septa-flow-mlp"), "writes (");
    let ev = alerts_for("exfiltration", Mode::Shadow);
    mostly(&summaries(&ev, "septa-flow-mlp"), "outbound");
    let ev = alerts_for("tcp_scan", Mode::Shadow);
    let s = summaries(&ev, "septa-flow-ae");
    assert!(!s.is_empty());
    for e in &ev {
        if let MlEvent::Alert(a) = e {
            let first = &a.reasons[0];
            assert!(first.weight > 0.0 && first.weight <= 1.0);
            assert!(a.reasons.windows(2).all(|w| w[0].weight >= w[1].weight));
        }
    }
}

#[test]
fn every_alert_carries_model_id_and_hash() {
    let clf = load("septa-flow-mlp-v1.json");
    let ae = load("septa-flow-ae-v1.json");
    let ev = alerts_for("lateral_sweep", Mode::Shadow);
    assert!(!ev.is_empty());
    // ... and its flow's protocol label, from the record that alerted.
    let rows = rows();
    let l7_of = |a: &septa_ml::Alert| {
        let r = rows
            .iter()
            .enumerate()
            .map(|(i, r)| r.record(i))
            .find(|r| {
                (r.key.src, r.key.dst, r.key.src_port, r.key.dst_port)
                    == (a.src, a.dst, a.src_port, a.dst_port)
            })
            .expect("the alerting record");
        match r.l7 {
            septa_features::L7Proto::Unknown => "",
            l => l.name(),
        }
    };
    let mut labels = std::collections::BTreeSet::new();
    for e in &ev {
        if let MlEvent::Alert(a) = e {
            assert_eq!(a.l7, l7_of(a), "{a:?}");
            labels.insert(a.l7.clone());
        }
    }
    assert!(
        labels.iter().any(|l| !l.is_empty()),
        "a sweep over SMB/RDP/WinRM has identified flows among its alerts: {labels:?}"
    );
    for e in ev {
        let MlEvent::Alert(a) = e else {
            panic!("shadow mode emitted {e:?}")
        };
        let want = if a.model_id == clf.meta.model_id {
            clf.hash()
        } else {
            ae.hash()
        };
        assert_eq!(a.model_hash, want);
        assert_eq!(a.model_hash.len(), 64);
        assert_eq!(a.mode, Mode::Shadow);
    }
}

#[test]
fn shadow_is_the_default_and_act_only_proposes() {
    assert_eq!(MlConfig::new("x").mode, Mode::Shadow);
    let ev = alerts_for("lateral_sweep", Mode::Act);
    let proposals: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            MlEvent::Quarantine(q) => Some(q),
            _ => None,
        })
        .collect();
    assert!(!proposals.is_empty());
    let mut hosts: Vec<_> = proposals.iter().map(|q| q.host).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), proposals.len(), "one proposal per host");
    assert!(
        proposals
            .iter()
            .all(|q| q.score >= 0.95 && !q.justification.is_empty())
    );
    // normal traffic yields (almost) nothing to act on
    let ev = alerts_for("dns", Mode::Act);
    let n = ev
        .iter()
        .filter(|e| matches!(e, MlEvent::Quarantine(_)))
        .count();
    assert!(n <= 1, "{n} proposals on DNS");
}

#[test]
fn monitor_mode_learns_a_site_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let normal: Vec<_> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.label == 0)
        .map(|(i, r)| r.record(i))
        .collect();
    let mut cfg = MlConfig::new(model_dir());
    cfg.mode = Mode::Monitor;
    cfg.calibration_dir = Some(dir.path().to_path_buf());
    cfg.min_calibration_samples = 200;
    let mut e = Engine::load(cfg.clone()).unwrap();
    let mut ev = Vec::new();
    e.score_batch(&normal, &mut ev).unwrap();
    assert!(
        ev.iter().all(|e| matches!(e, MlEvent::Calibrated(_))),
        "monitor mode never alerts"
    );
    // past 200 scores each model's calibration is derived and announced (once per batch)
    assert_eq!(ev.len(), 2);
    let cals = e.finish_calibration().unwrap();
    assert_eq!(cals.len(), 2);
    let ae = cals
        .iter()
        .find(|c| c.model_id.starts_with("septa-flow-ae"))
        .unwrap();
    assert!(ae.median < ae.quantile && ae.quantile <= ae.threshold);
    // the next start uses the persisted thresholds
    cfg.mode = Mode::Shadow;
    let e2 = Engine::load(cfg).unwrap();
    for (id, _, thr) in e2.models() {
        let c = cals.iter().find(|c| c.model_id == id).unwrap();
        assert_eq!(thr, c.threshold);
    }
}

/// Shadow mode without a stored calibration: the model thresholds hold during the warm-up, then
/// the site's own score quantile (capped at `max_threshold_lift` times the model's) takes over,
/// is written to `calibration_dir` and loaded by the next start.
#[test]
fn shadow_mode_calibrates_after_the_warm_up_with_a_capped_lift() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let normal: Vec<_> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.label == 0)
        .map(|(i, r)| r.record(i))
        .collect();
    assert!(normal.len() > 400);
    let mut cfg = MlConfig::new(model_dir());
    cfg.calibration_dir = Some(dir.path().to_path_buf());
    cfg.warmup_records = 300;
    cfg.max_threshold_lift = 1.5;
    let mut e = Engine::load(cfg.clone()).unwrap();
    let floors: Vec<_> = e.models().into_iter().map(|(id, _, t)| (id, t)).collect();
    // A site where every record scores as if it were abnormal: the warm-up learns that.
    let site: Vec<_> = normal
        .iter()
        .map(|r| {
            let mut r = *r;
            r.tcp.rst = r.packets[0] + r.packets[1];
            r
        })
        .collect();
    let mut ev = Vec::new();
    e.score_batch(&site[..299], &mut ev).unwrap();
    assert_eq!(e.counters.calibrations, 0, "still warming up");
    assert_eq!(
        e.models()
            .into_iter()
            .map(|(id, _, t)| (id, t))
            .collect::<Vec<_>>(),
        floors
    );
    let during = ev.iter().filter(|e| matches!(e, MlEvent::Alert(_))).count();
    let mark = ev.len();
    e.score_batch(&site[299..300], &mut ev).unwrap();
    assert_eq!(
        e.counters.calibrations, 2,
        "both models calibrated at 300 records"
    );
    let announced: Vec<_> = ev[mark..]
        .iter()
        .filter_map(|e| match e {
            MlEvent::Calibrated(c) => Some((c.model_id.clone(), c.samples)),
            _ => None,
        })
        .collect();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert!(announced.iter().all(|(_, n)| *n == 300));
    for (id, _, t) in e.models() {
        let floor = floors.iter().find(|f| f.0 == id).unwrap().1;
        assert!(
            t >= floor && t <= floor * 1.5 + 1e-6,
            "{id}: {t} vs {floor}"
        );
        assert!(dir.path().join(format!("{id}.calibration.json")).exists());
    }
    ev.clear();
    e.score_batch(&site[300..], &mut ev).unwrap();
    let rate_after = ev.len() as f64 / (site.len() - 300) as f64;
    let rate_during = during as f64 / 299.0;
    assert!(
        during > 0,
        "the altered records alert under the model thresholds"
    );
    assert!(
        rate_after < rate_during,
        "alert rate {rate_during:.3} during the warm-up, {rate_after:.3} after"
    );
    // the next start loads it and does not warm up again
    let e2 = Engine::load(cfg).unwrap();
    assert_eq!(e2.models(), e.models());
}

/// A flow that keeps alerting (first packets, periodic, final records) is one alert per model
/// within the repeat window; the rest are counted.
#[test]
fn a_flow_alerts_once_per_model_within_the_repeat_window() {
    let rows = rows();
    let (i, row) = rows
        .iter()
        .enumerate()
        .find(|(_, r)| r.profile == "tcp_scan")
        .unwrap();
    let rec = row.record(i);
    let mut e = engine(Mode::Shadow);
    let mut ev = Vec::new();
    e.score_batch(&[rec, rec, rec], &mut ev).unwrap();
    e.score_batch(&[rec], &mut ev).unwrap();
    let per_model = |ev: &[MlEvent]| {
        let mut ids: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                MlEvent::Alert(a) => Some(a.model_id.clone()),
                _ => None,
            })
            .collect();
        ids.sort();
        ids
    };
    let ids = per_model(&ev);
    let mut unique = ids.clone();
    unique.dedup();
    assert!(!ids.is_empty() && ids == unique, "{ids:?}");
    assert_eq!(e.counters.repeats, 4 * ids.len() as u64 - ids.len() as u64);
    // another flow of the same source still alerts; with the window off, every record does
    let mut other = rec;
    other.key.src_port = other.key.src_port.wrapping_add(1);
    ev.clear();
    e.score_batch(&[other], &mut ev).unwrap();
    assert_eq!(per_model(&ev), ids);
    let mut cfg = MlConfig::new(model_dir());
    cfg.repeat_window_s = 0;
    let mut e = Engine::load(cfg).unwrap();
    ev.clear();
    e.score_batch(&[rec, rec], &mut ev).unwrap();
    assert_eq!(per_model(&ev).len(), 2 * ids.len());
    assert_eq!(e.counters.repeats, 0);
}

fn copy_models(to: &Path) {
    for f in [
        "septa-flow-mlp-v1.json",
        "septa-flow-mlp-v1.onnx",
        "septa-flow-ae-v1.json",
        "septa-flow-ae-v1.onnx",
    ] {
        std::fs::copy(model_dir().join(f), to.join(f)).unwrap();
    }
}

#[test]
fn missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::load(MlConfig::new(dir.path())).unwrap_err();
    assert!(matches!(e, MlError::Io { .. }));
    assert!(e.to_string().contains("septa-flow-mlp-v1.json"), "{e}");
    copy_models(dir.path());
    std::fs::remove_file(dir.path().join("septa-flow-ae-v1.onnx")).unwrap();
    let e = Engine::load(MlConfig::new(dir.path())).unwrap_err();
    assert!(e.to_string().contains("septa-flow-ae-v1.onnx"), "{e}");
}

#[test]
fn corrupted_or_swapped_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_models(dir.path());
    let p = dir.path().join("septa-flow-mlp-v1.onnx");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 10] ^= 1;
    std::fs::write(&p, b).unwrap();
    let e = Model::load(&dir.path().join("septa-flow-mlp-v1.json")).unwrap_err();
    assert!(matches!(e, MlError::HashMismatch { .. }), "{e}");
    // the autoencoder graph under classifier metadata: the output shape check catches it
    let text = std::fs::read_to_string(dir.path().join("septa-flow-mlp-v1.json")).unwrap();
    let mut meta: septa_ml::ModelMeta = serde_json::from_str(&text).unwrap();
    let ae = std::fs::read(dir.path().join("septa-flow-ae-v1.onnx")).unwrap();
    meta.onnx_sha256.clear();
    let e = Model::from_bytes(meta.clone(), &ae).unwrap_err();
    assert!(e.to_string().contains("expected f32 [N, 1]"), "{e}");
    // garbage bytes: tract error, not a panic
    let e = Model::from_bytes(meta.clone(), b"not an onnx file").unwrap_err();
    assert!(matches!(e, MlError::Tract { .. }), "{e}");
    // another feature schema
    meta.schema_version = 99;
    let e = Model::from_bytes(meta.clone(), &ae).unwrap_err();
    assert!(e.to_string().contains("feature schema v99"), "{e}");
    meta.schema_version = 1;
    meta.kind = ModelKind::Autoencoder;
    let e = Model::from_bytes(meta, &ae).unwrap_err();
    assert!(e.to_string().contains("output_width 1"), "{e}");
}
