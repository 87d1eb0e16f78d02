//! Classification metrics: the confusion matrix and scikit-learn's
//! `classification_report`, same numbers and same layout.

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
    pub accuracy: f64,
    pub macro_avg: ClassScores,
    pub weighted_avg: ClassScores,
    pub support: u64,
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
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            classes.push(ClassScores { name, precision, recall, f1, support });
        }
        let support = self.total();
        let avg = |name: &str, weight: &dyn Fn(&ClassScores) -> f64| {
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
        };
        let macro_avg = avg("macro avg", &|_| 1.0);
        let weighted_avg = avg("weighted avg", &|c| c.support as f64);
        ClassificationReport { accuracy: self.accuracy(), classes, macro_avg, weighted_avg, support }
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
        s += &format!("{:>width$}  {:>9} {:>9} {:>9.digits$} {:>9}\n", "accuracy", "", "", self.accuracy, self.support);
        s += &row(&self.macro_avg);
        s += &row(&self.weighted_avg);
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
