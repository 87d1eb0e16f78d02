//! Classification metrics: the confusion matrix and scikit-learn's
//! `classification_report`, same numbers and same layout, for classes and
//! for multiple labels (`MultiLabelCounts`).

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// `counts[t][p]`: examples of true class `t` predicted as `p`.
    pub counts: Vec<Vec<u64>>,
}

/// One row of the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClassScores {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClassificationReport {
    pub classes: Vec<ClassScores>,
    /// The share of examples predicted exactly (every label right, for
    /// multiple labels: scikit-learn's subset accuracy).
    pub accuracy: f64,
    /// Multiple labels: scores of all labels' decisions pooled. The report
    /// then has this row and `samples_avg` instead of an accuracy row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_avg: Option<ClassScores>,
    pub macro_avg: ClassScores,
    pub weighted_avg: ClassScores,
    /// Multiple labels: each example's scores over its labels, averaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_avg: Option<ClassScores>,
    pub support: u64,
}

/// Counts of a multi-label classifier's decisions: per label, true and false
/// positives and negatives; per example, its precision, recall and F1 over
/// its labels (summed) and whether every label was right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelCounts {
    /// Per label: `[true positives, false positives, false negatives, true negatives]`.
    pub counts: Vec<[u64; 4]>,
    /// Sums over examples of each one's precision, recall and F1.
    pub sample_sums: [f64; 3],
    /// Examples with every label right.
    pub exact: u64,
    pub rows: u64,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> ConfusionMatrix {
        ConfusionMatrix { counts: vec![vec![0; classes]; classes] }
    }

    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// Records one example; labels outside the matrix are ignored.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        if let Some(c) = self.counts.get_mut(truth).and_then(|r| r.get_mut(predicted)) {
            *c += 1;
        }
    }

    /// Adds another matrix of the same size (e.g. another rank's).
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    /// The counts as one flat f64 vector (row-major), for an MPI sum.
    pub fn to_flat(&self) -> Vec<f64> {
        self.counts.iter().flatten().map(|&c| c as f64).collect()
    }

    pub fn from_flat(classes: usize, flat: &[f64]) -> ConfusionMatrix {
        ConfusionMatrix {
            counts: flat.chunks(classes.max(1)).map(|r| r.iter().map(|&c| c.round() as u64).collect()).collect(),
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.classes()).map(|i| self.counts[i][i]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// scikit-learn's numbers: 0 where a ratio's denominator is 0 (its
    /// `zero_division` default, without the warning).
    pub fn report(&self, names: &[String]) -> ClassificationReport {
        let n = self.classes();
        let mut classes = Vec::with_capacity(n);
        for i in 0..n {
            let tp = self.counts[i][i];
            let predicted: u64 = (0..n).map(|t| self.counts[t][i]).sum();
            let support: u64 = self.counts[i].iter().sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            classes.push(ClassScores { name, precision, recall, f1: f1(precision, recall), support });
        }
        let support = self.total();
        ClassificationReport {
            accuracy: self.accuracy(),
            micro_avg: None,
            macro_avg: average(&classes, "macro avg", &|_| 1.0, support),
            weighted_avg: average(&classes, "weighted avg", &|c| c.support as f64, support),
            samples_avg: None,
            classes,
            support,
        }
    }
}

impl MultiLabelCounts {
    pub fn new(labels: usize) -> MultiLabelCounts {
        MultiLabelCounts { counts: vec![[0; 4]; labels], sample_sums: [0.0; 3], exact: 0, rows: 0 }
    }

    pub fn labels(&self) -> usize {
        self.counts.len()
    }

    /// Records one example: which labels it has and which were predicted.
    pub fn add(&mut self, truth: &[bool], predicted: &[bool]) {
        let (mut tp, mut has, mut given) = (0u64, 0u64, 0u64);
        for (c, (&t, &p)) in self.counts.iter_mut().zip(truth.iter().zip(predicted)) {
            c[match (t, p) {
                (true, true) => 0,
                (false, true) => 1,
                (true, false) => 2,
                (false, false) => 3,
            }] += 1;
            tp += u64::from(t && p);
            has += u64::from(t);
            given += u64::from(p);
        }
        let (precision, recall) = (ratio(tp, given), ratio(tp, has));
        self.sample_sums[0] += precision;
        self.sample_sums[1] += recall;
        self.sample_sums[2] += f1(precision, recall);
        self.exact += u64::from(truth == predicted);
        self.rows += 1;
    }

    /// The counts as one flat f64 vector, for an MPI sum.
    pub fn to_flat(&self) -> Vec<f64> {
        let counts = self.counts.iter().flatten().map(|&c| c as f64);
        counts.chain(self.sample_sums).chain([self.exact as f64, self.rows as f64]).collect()
    }

    pub fn from_flat(labels: usize, flat: &[f64]) -> MultiLabelCounts {
        let at = |i: usize| flat.get(i).copied().unwrap_or(0.0);
        let count = |i: usize| at(i).round() as u64;
        let base = 4 * labels;
        MultiLabelCounts {
            counts: (0..labels).map(|l| std::array::from_fn(|k| count(4 * l + k))).collect(),
            sample_sums: [at(base), at(base + 1), at(base + 2)],
            exact: count(base + 3),
            rows: count(base + 4),
        }
    }

    /// Examples with every label right, as a share (scikit-learn's
    /// `accuracy_score` on label sets).
    pub fn accuracy(&self) -> f64 {
        ratio(self.exact, self.rows)
    }

    /// scikit-learn's `classification_report` of label sets: a row per
    /// label (support: the examples that have it), then micro, macro,
    /// weighted and samples averages; 0 where a denominator is 0.
    pub fn report(&self, names: &[String]) -> ClassificationReport {
        let scores = |name: String, [tp, fp, fn_, _]: [u64; 4]| {
            let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
            ClassScores { name, precision, recall, f1: f1(precision, recall), support: tp + fn_ }
        };
        let classes: Vec<ClassScores> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| scores(names.get(i).cloned().unwrap_or_else(|| i.to_string()), c))
            .collect();
        let pooled = self.counts.iter().fold([0u64; 4], |a, c| std::array::from_fn(|k| a[k] + c[k]));
        let micro = scores("micro avg".into(), pooled);
        let support = micro.support;
        let n = self.rows.max(1) as f64;
        let samples = ClassScores {
            name: "samples avg".into(),
            precision: self.sample_sums[0] / n,
            recall: self.sample_sums[1] / n,
            f1: self.sample_sums[2] / n,
            support,
        };
        ClassificationReport {
            accuracy: self.accuracy(),
            micro_avg: Some(micro),
            macro_avg: average(&classes, "macro avg", &|_| 1.0, support),
            weighted_avg: average(&classes, "weighted avg", &|c| c.support as f64, support),
            samples_avg: Some(samples),
            classes,
            support,
        }
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// The classes' scores averaged with `weight`.
fn average(classes: &[ClassScores], name: &str, weight: &dyn Fn(&ClassScores) -> f64, support: u64) -> ClassScores {
    let w: f64 = classes.iter().map(weight).sum();
    let mean = |f: &dyn Fn(&ClassScores) -> f64| {
        if w > 0.0 {
            classes.iter().map(|c| f(c) * weight(c)).sum::<f64>() / w
        } else {
            0.0
        }
    };
    ClassScores {
        name: name.into(),
        precision: mean(&|c| c.precision),
        recall: mean(&|c| c.recall),
        f1: mean(&|c| c.f1),
        support,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl ClassificationReport {
    /// The text `sklearn.metrics.classification_report(..., digits=digits)` prints.
    pub fn to_text(&self, digits: usize) -> String {
        let heading = "weighted avg";
        let name_width = self.classes.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
        let width = name_width.max(heading.len()).max(digits);
        let mut s = format!("{:>width$} ", "");
        for h in ["precision", "recall", "f1-score", "support"] {
            s += &format!(" {h:>9}");
        }
        s += "\n\n";
        let row = |c: &ClassScores| {
            format!(
                "{:>width$}  {:>9.digits$} {:>9.digits$} {:>9.digits$} {:>9}\n",
                c.name, c.precision, c.recall, c.f1, c.support
            )
        };
        for c in &self.classes {
            s += &row(c);
        }
        s += "\n";
        match &self.micro_avg {
            Some(micro) => s += &row(micro),
            None => {
                s += &format!(
                    "{:>width$}  {:>9} {:>9} {:>9.digits$} {:>9}\n",
                    "accuracy", "", "", self.accuracy, self.support
                )
            }
        }
        s += &row(&self.macro_avg);
        s += &row(&self.weighted_avg);
        if let Some(samples) = &self.samples_avg {
            s += &row(samples);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn() {
        // y_true = [0,0,0,0,1,1,1,2,2,2], y_pred = [0,0,1,2,1,1,0,2,2,1]; the
        // expected text is what scikit-learn prints for them with digits=4
        // (checked against scikit-learn 1.x from .venv).
        let t = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
        let p = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1];
        let mut cm = ConfusionMatrix::new(3);
        for (a, b) in t.iter().zip(&p) {
            cm.add(*a, *b);
        }
        let names: Vec<String> = ["ham", "spam", "eggs"].iter().map(|s| s.to_string()).collect();
        let text = cm.report(&names).to_text(4);
        let expected = "              precision    recall  f1-score   support

         ham     0.6667    0.5000    0.5714         4
        spam     0.5000    0.6667    0.5714         3
        eggs     0.6667    0.6667    0.6667         3

    accuracy                         0.6000        10
   macro avg     0.6111    0.6111    0.6032        10
weighted avg     0.6167    0.6000    0.6000        10
";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_sets_match_scikit_learn() {
        // The expected text is what scikit-learn 1.9 prints for these
        // indicator rows with digits=4 (classification_report(y_true, y_pred,
        // target_names=..., digits=4)): a sample with no labels at all scores
        // 0, as its zero_division default does.
        let t = [[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 0]];
        let p = [[1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]];
        let mut m = MultiLabelCounts::new(3);
        let b = |r: &[i32; 3]| r.map(|x| x == 1);
        for (a, c) in t.iter().zip(&p) {
            m.add(&b(a), &b(c));
        }
        let names: Vec<String> = ["a", "bb", "c"].iter().map(|s| s.to_string()).collect();
        let expected = "              precision    recall  f1-score   support

           a     1.0000    1.0000    1.0000         2
          bb     1.0000    0.5000    0.6667         2
           c     0.0000    0.0000    0.0000         1

   micro avg     0.7500    0.6000    0.6667         5
   macro avg     0.6667    0.5000    0.5556         5
weighted avg     0.8000    0.6000    0.6667         5
 samples avg     0.4167    0.3750    0.3667         5
";
        let r = m.report(&names);
        assert_eq!(r.to_text(4), expected);
        // Rows 2 (no labels, none predicted) and nothing else are exact.
        assert_eq!(r.accuracy, 0.25);
        assert_eq!(MultiLabelCounts::from_flat(3, &m.to_flat()), m);
    }

    #[test]
    fn empty_classes_score_zero_not_nan() {
        let mut cm = ConfusionMatrix::new(2);
        cm.add(0, 0);
        let r = cm.report(&[]);
        assert_eq!(r.classes[1].precision, 0.0);
        assert_eq!(r.classes[1].name, "1");
        assert_eq!(r.accuracy, 1.0);
        let flat = cm.to_flat();
        assert_eq!(ConfusionMatrix::from_flat(2, &flat), cm);
    }
}
