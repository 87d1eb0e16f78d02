//! What rank 0 prints and writes: the tutorial's log lines as training goes,
//! a progress bar on a terminal, and at the end the loss plot, the
//! classification report, the confusion matrix and the JSON record.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::predict::{argmax, EvaluateRun, Evaluation, PredictRun, MULTI_LABEL_THRESHOLD};
use super::train::{Event, PredictedRows, Sink, Started, TestPredictions, TrainRun, TEST_PREDICTIONS_FILE};
use crate::report::plot::{Heatmap, LinePlot, Series};
use crate::report::{write_atomic, write_json, Progress};

/// Shows a run's events on rank 0 (through the progress bar, so lines and bar
/// don't tear); silent elsewhere.
pub struct Reporter {
    root: bool,
    progress: Option<Progress>,
}

impl Reporter {
    pub fn new(root: bool) -> Reporter {
        Reporter { root, progress: None }
    }

    fn line(&self, text: &str) {
        if !self.root {
            return;
        }
        match &self.progress {
            Some(p) => p.println(text),
            None => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(mut p) = self.progress.take() {
            p.finish();
        }
    }
}

impl Sink for Reporter {
    fn event(&mut self, event: Event) {
        match event {
            Event::Started(s) => {
                for l in started_lines(s) {
                    self.line(&l);
                }
                self.progress = Some(Progress::new("Training", s.steps, self.root));
            }
            Event::Resumed { step, total, path } => {
                self.line(&format!("Resuming from {} at step {step}/{total}", path.display()));
                if let Some(p) = &mut self.progress {
                    p.set(step);
                }
            }
            Event::NothingToResume { path } => {
                self.line(&format!("--resume: no checkpoint at {}; starting fresh", path.display()))
            }
            Event::Validated { epoch, epochs, step, total, train_loss, valid } => self.line(&format!(
                "Epoch [{epoch}/{epochs}], Step [{step}/{total}], Train Loss: {train_loss:.4}, Valid Loss: {:.4}, Valid Accuracy: {:.4}",
                valid.loss, valid.accuracy
            )),
            Event::Saved { path } => self.line(&format!("Model saved to ==> {}", path.display())),
            Event::Stopped { signal, step, total, path } => {
                self.finish();
                self.line(&format!(
                    "Stopped by {signal} after step {step}/{total}: checkpoint saved to ==> {}",
                    path.display()
                ));
                self.line(&format!("To continue, run the same command with --resume: {}", resume_command()));
            }
            Event::Finished { steps, seconds, samples_per_second } => {
                self.finish();
                self.line(&format!(
                    "Finished Training! {steps} steps in {seconds:.1} s ({samples_per_second:.1} training samples/s)"
                ));
            }
            Event::BestLoaded { path, best } => self.line(&format!(
                "Model loaded from <== {} (step {}, valid loss {:.4})",
                path.display(),
                best.step,
                best.valid_loss
            )),
            Event::Testing { set, rows, missing } => match missing {
                Some(missing) => self.line(&format!("No {missing}: evaluating the model on {set} instead ({rows} rows)")),
                None => self.line(&format!("Evaluating the model on {set} ({rows} rows)")),
            },
        }
    }

    fn step(&mut self, step: u64, _total: u64, loss: f64) {
        if let Some(p) = &mut self.progress {
            p.set(step);
            p.message(format!("loss {loss:.4}"));
        }
    }
}

/// This process's command line with `--resume` added, quoted for a shell.
fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        if let Some(name) = Path::new(first.as_str()).file_name() {
            *first = name.to_string_lossy().into_owned();
        }
    }
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn started_lines(s: &Started) -> Vec<String> {
    let mut out = Vec::new();
    let new = if s.new_parameters.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = s.new_parameters.iter().map(|n| n.split(' ').next().unwrap_or(n)).collect();
        format!("; new: {}", names.join(", "))
    };
    let parameters = if s.parameters >= 100_000 {
        format!("{:.1}M", s.parameters as f64 / 1e6)
    } else {
        format!("{:.1}K", s.parameters as f64 / 1e3)
    };
    out.push(format!(
        "Model: {} ({parameters} parameters, {} layers, hidden {}, {}{new})",
        s.model, s.layers, s.hidden, s.tokenizer
    ));
    let file = |i: usize, tutorial: &'static str| s.files.get(i).map_or(tutorial, String::as_str);
    let (sets, train, valid, test) = match &s.split_by {
        Some(how) => (format!("{how}: "), "train", "valid", "test"),
        None => (String::new(), file(0, "train.csv"), file(1, "valid.csv"), file(2, "test.csv")),
    };
    // An unlabelled test file is named after the counts: it has none.
    let (test, unscored) = match (s.test_rows, s.test_unlabelled) {
        (Some(n), _) => (format!(", {test} {n}"), String::new()),
        (None, true) => (String::new(), format!(", {test} unlabelled (not scored)")),
        (None, false) => (format!(", no {test}"), String::new()),
    };
    let skipped = if s.skipped_rows.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = s.skipped_rows.iter().map(|(f, n)| format!("{n} in {f}")).collect();
        format!("; skipped malformed rows: {}", parts.join(", "))
    };
    // The tutorial's columns go unsaid; others, found or named, are said.
    let columns =
        if (s.text_column.as_str(), s.label_column.as_str()) == ("titletext", "label") || s.text_column.is_empty() {
            String::new()
        } else {
            let how = s.columns_found_by.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
            match &s.text_pair_column {
                Some(pair) => format!(
                    "; text pairs from columns '{}' and '{pair}', label column '{}'{how}",
                    s.text_column, s.label_column
                ),
                None => format!("; text column '{}', label column '{}'{how}", s.text_column, s.label_column),
            }
        };
    let classes: Vec<String> = if s.label_values.len() == s.labels.len() && s.label_values != s.labels {
        s.label_values.iter().zip(&s.labels).map(|(v, n)| format!("{v}={n}")).collect()
    } else {
        s.labels.clone()
    };
    let classes = match s.multi_label {
        true => format!("labels {} (multi-label: each text has any number of them)", classes.join(", ")),
        false => format!("classes {}", classes.join(", ")),
    };
    out.push(format!(
        "Data: {sets}{train} {}, {valid} {}{test} rows{unscored}{columns}; {classes}; up to {} tokens ({:.1}% of training texts cut, {:.1} tokens on average){skipped}",
        s.train_rows,
        s.valid_rows,
        s.max_len,
        100.0 * s.truncated_fraction,
        s.mean_tokens
    ));
    let engine = s.cpu_engine.as_ref().map(|e| format!(" on {e}")).unwrap_or_default();
    out.push(format!(
        "Running on {} ({}{engine}), {} thread(s) per rank, {} rank(s) on {} node(s); batch {}, {} steps, validation every {} steps",
        s.device, s.precision, s.threads_per_rank, s.ranks, s.nodes, s.batch_size, s.steps, s.eval_every
    ));
    out.push("Start Training...".into());
    out
}

/// The lines after training: the report.
pub fn report_lines(run: &TrainRun) -> Vec<String> {
    vec!["Classification Report:".into(), run.report_text.trim_end().to_string()]
}

/// Writes the plot, report, confusion matrix and record under `out`; returns
/// the files written.
pub fn write_train_outputs(run: &TrainRun, out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let h = &run.history;
    let steps: Vec<f64> = h.global_steps.iter().map(|&s| s as f64).collect();
    let mut plot = LinePlot::new("Loss vs. global steps", "Global Steps", "Loss");
    plot.markers = steps.len() < 40;
    plot.series.push(Series::new("Train", steps.iter().copied().zip(h.train_loss.iter().copied()).collect()));
    plot.series.push(Series::new("Valid", steps.iter().copied().zip(h.valid_loss.iter().copied()).collect()));
    let p = out.join("loss_v_global_steps.png");
    plot.save(&p)?;
    written.push(p);
    let p = out.join("confusion_matrix.png");
    confusion_heatmap(&run.test, &run.started.labels).save(&p)?;
    written.push(p);
    let p = out.join("classification_report.txt");
    write_atomic(&p, |w| Ok(w.write_all(run.report_text.as_bytes())?))?;
    written.push(p);
    if let Some(t) = &run.test_predictions {
        let p = out.join(TEST_PREDICTIONS_FILE);
        let st = &run.started;
        let bytes = if st.label_values.is_empty() {
            test_predictions_csv(t, &st.labels, None)?
        } else {
            test_predictions_csv(t, &st.label_values, Some(&st.labels))?
        };
        write_atomic(&p, |w| Ok(w.write_all(&bytes)?))?;
        written.push(p);
    }
    let p = out.join("results.json");
    write_json(&p, run)?;
    written.push(p);
    Ok(written)
}

/// `index,label,probability`: each row's index among the test file's records
/// (as pandas and GLUE number them) and its class as the training file wrote
/// it (`values`), with a `name` column too where `--class-names` named the
/// classes. A multi-label model's rows are `index,labels,` then each label's
/// probability: the labels it gives (`;` between them), under their columns' names.
fn test_predictions_csv(t: &TestPredictions, values: &[String], names: Option<&[String]>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    match &t.rows {
        PredictedRows::Classes(classes) => {
            let mut header = vec!["index", "label", "probability"];
            if names.is_some() {
                header.insert(2, "name");
            }
            w.write_record(&header)?;
            for (index, &(class, p)) in t.index.iter().zip(classes) {
                let mut row = vec![index.to_string(), values[class].clone(), format!("{p:.4}")];
                if let Some(names) = names {
                    row.insert(2, names[class].clone());
                }
                w.write_record(&row)?;
            }
        }
        PredictedRows::Labels(label_probabilities) => {
            w.write_record(std::iter::once("index").chain(["labels"]).chain(values.iter().map(String::as_str)))?;
            let shown = names.unwrap_or(values);
            for (index, probs) in t.index.iter().zip(label_probabilities) {
                let given = shown.iter().zip(probs).filter(|(_, &p)| p >= MULTI_LABEL_THRESHOLD);
                let has: Vec<&str> = given.map(|(n, _)| n.as_str()).collect();
                let row = [index.to_string(), has.join(";")].into_iter().chain(probs.iter().map(|p| format!("{p:.4}")));
                w.write_record(row)?;
            }
        }
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// The confusion matrix as seaborn draws the tutorial's: true classes down,
/// predicted across. A multi-label model's has a row per label and its four
/// counts across, as scikit-learn's `multilabel_confusion_matrix` gives them.
pub fn confusion_heatmap(ev: &Evaluation, labels: &[String]) -> Heatmap {
    if let Some(m) = &ev.multi_label {
        let [tn, fp, fn_, tp] = MULTI_LABEL_CELLS;
        return Heatmap {
            title: "Confusion Matrix per Label".into(),
            row_label: "Label".into(),
            col_label: "True / Predicted".into(),
            rows: labels.to_vec(),
            cols: [tn, fp, fn_, tp].iter().map(|s| s.to_string()).collect(),
            // Counts are kept as [tp, fp, fn, tn].
            values: m.counts.iter().map(|c| [c[3], c[1], c[2], c[0]].map(|x| x as f64).to_vec()).collect(),
        };
    }
    let cm = &ev.confusion;
    Heatmap {
        title: "Confusion Matrix".into(),
        row_label: "True Labels".into(),
        col_label: "Predicted Labels".into(),
        rows: labels.to_vec(),
        cols: labels.to_vec(),
        values: cm.counts.iter().map(|r| r.iter().map(|&c| c as f64).collect()).collect(),
    }
}

/// The columns of a multi-label confusion heatmap: (true, predicted).
const MULTI_LABEL_CELLS: [&str; 4] = ["no / no", "no / yes", "yes / no", "yes / yes"];

pub fn wrote_line(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!("Wrote {}", names.join(", "))
}

/// `Prediction for '…': spam (0.9731)`, texts cut to 60 characters; a
/// multi-label model's `toxic (0.9731), insult (0.8812)`, or `none
/// (highest: toxic 0.3100)`.
pub fn prediction_lines(run: &PredictRun) -> Vec<String> {
    run.predictions
        .iter()
        .map(|p| {
            let pair = p.pair.as_ref().map(|b| format!(" / '{}'", shorten(b, 60))).unwrap_or_default();
            let label = match (run.multi_label, p.labels.is_empty()) {
                (false, _) => format!("{} ({:.4})", p.label, p.probability),
                (true, false) => {
                    let each = p.labels.iter().map(|l| {
                        let at = run.labels.iter().position(|n| n == l);
                        let prob = at.and_then(|i| p.probabilities.get(i)).copied().unwrap_or(f32::NAN);
                        format!("{l} ({prob:.4})")
                    });
                    each.collect::<Vec<_>>().join(", ")
                }
                (true, true) => {
                    let best = argmax(&p.probabilities).0;
                    let name = run.labels.get(best).map_or("", String::as_str);
                    format!("none (highest: {name} {:.4})", p.probability)
                }
            };
            format!("Prediction for '{}'{pair}: {label}", shorten(&p.text, 60))
        })
        .collect()
}

fn shorten(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

pub fn evaluate_lines(run: &EvaluateRun) -> Vec<String> {
    let mut out = vec![format!(
        "Evaluated {} on {} ({} rows{}) in {:.2} s ({:.1} texts/s){}",
        run.model,
        run.file.display(),
        run.evaluation.rows,
        if run.skipped_rows > 0 { format!(", {} malformed rows skipped", run.skipped_rows) } else { String::new() },
        run.seconds,
        run.texts_per_second,
        if run.prepare_seconds >= 0.005 {
            format!(", after {:.2} s preparing the weights", run.prepare_seconds)
        } else {
            String::new()
        }
    )];
    if run.labels_by_id {
        let ids: Vec<String> = run.labels.iter().enumerate().map(|(i, n)| format!("{i}={n}")).collect();
        out.push(format!("Labels: the file numbers the classes; read as the model's class ids ({})", ids.join(", ")));
    }
    // A multi-label text is right when every one of its labels is.
    let all = if run.evaluation.multi_label.is_some() { " (every label right)" } else { "" };
    out.push(format!("Loss: {:.4}, Accuracy{all}: {:.4}", run.evaluation.loss, run.evaluation.accuracy));
    out.push("Classification Report:".into());
    out.push(run.report.to_text(4).trim_end().to_string());
    out
}

/// `evaluate`'s files under `out`: report, confusion matrix, record.
pub fn write_evaluate_outputs(run: &EvaluateRun, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let p = out.join("confusion_matrix.png");
    confusion_heatmap(&run.evaluation, &run.labels).save(&p)?;
    written.push(p);
    let p = out.join("classification_report.txt");
    let text = run.report.to_text(4);
    write_atomic(&p, |w| Ok(w.write_all(text.as_bytes())?))?;
    written.push(p);
    let p = out.join("evaluation.json");
    write_json(&p, run)?;
    written.push(p);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_predictions_name_rows_by_index_and_classes_by_value() {
        let t = TestPredictions { index: vec![0, 2], rows: PredictedRows::Classes(vec![(1, 0.98766), (0, 0.5)]) };
        let values = ["0".to_string(), "1, maybe".to_string()];
        let csv = String::from_utf8(test_predictions_csv(&t, &values, None).unwrap()).unwrap();
        assert_eq!(csv, "index,label,probability\n0,\"1, maybe\",0.9877\n2,0,0.5000\n");
        let names = ["REAL".to_string(), "FAKE".to_string()];
        let csv = String::from_utf8(test_predictions_csv(&t, &values, Some(&names)).unwrap()).unwrap();
        assert_eq!(csv.lines().next(), Some("index,label,name,probability"));
        assert_eq!(csv.lines().nth(2), Some("2,0,REAL,0.5000"));
    }

    #[test]
    fn multi_label_test_predictions_give_each_label_a_column() {
        let values = ["toxic", "insult", "threat"].map(String::from);
        let t = TestPredictions { index: vec![3], rows: PredictedRows::Labels(vec![vec![0.9, 0.2, 0.75]]) };
        let csv = String::from_utf8(test_predictions_csv(&t, &values, None).unwrap()).unwrap();
        assert_eq!(csv, "index,labels,toxic,insult,threat\n3,toxic;threat,0.9000,0.2000,0.7500\n");
        // No rows: still the multi-label header.
        let empty = TestPredictions { index: Vec::new(), rows: PredictedRows::Labels(Vec::new()) };
        let csv = String::from_utf8(test_predictions_csv(&empty, &values, None).unwrap()).unwrap();
        assert_eq!(csv, "index,labels,toxic,insult,threat\n");
    }

    #[test]
    fn long_texts_are_cut_on_one_line() {
        assert_eq!(shorten("a  b\nc", 60), "a b c");
        let long = "x".repeat(100);
        assert_eq!(shorten(&long, 60).chars().count(), 61);
    }
}
