//! Loading Hugging Face BERT checkpoints into our model by tensor name.
//!
//! Our variables carry the names of the family's `*ForSequenceClassification`
//! (`bert.encoder.layer.0.attention.self.query.weight`, `classifier.weight`;
//! `roberta.*`, `classifier.out_proj.*`; `distilbert.*`, `pre_classifier.*`;
//! ...). Checkpoints of the bare model have no prefix (`bert.`); old ones call
//! LayerNorm parameters `gamma` and `beta`; pre-training ones carry heads we
//! don't use (`PRETRAINING_HEADS`, and RoBERTa's and ELECTRA's pooler, which
//! their classifiers do not read). All of those load unchanged. What the checkpoint lacks must be exactly what is new for
//! fine-tuning (the classifier, and BERT's pooler where a checkpoint was
//! saved without one); anything else missing is an error.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::config::{BertConfig, Family};
use super::hub::{ModelFiles, Weights};
use super::torch_pickle;
use crate::bail_usage;
use crate::train::checkpoint::read_safetensors;

/// What loading a checkpoint did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    /// Variables the checkpoint lacked, left at their fresh initialisation.
    pub new: Vec<String>,
    /// Checkpoint tensors the model has no use for (pre-training heads, buffers).
    pub unused: Vec<String>,
}

/// Reads every tensor of a checkpoint, by its stored name.
pub fn read_checkpoint(files: &ModelFiles) -> Result<HashMap<String, Tensor>> {
    let mut all = HashMap::new();
    match &files.weights {
        Weights::Safetensors(paths) => {
            for p in paths {
                let (tensors, _) = read_safetensors(p).map_err(|e| crate::cli::usage(format!("{e:#}")))?;
                all.extend(tensors);
            }
        }
        Weights::PytorchBin(paths) => {
            for p in paths {
                all.extend(read_pytorch_bin(p)?);
            }
        }
    }
    Ok(all)
}

/// `pytorch_model.bin`, in either of `torch.save`'s formats ([`torch_pickle`]).
fn read_pytorch_bin(path: &Path) -> Result<HashMap<String, Tensor>> {
    let mut head = [0u8; 14];
    let got = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let Some(format) = torch_pickle::Format::of(&head[..got]) else {
        bail_usage!(
            "{} is not a PyTorch checkpoint (neither a torch.save zip archive nor its legacy format); download it again",
            path.display()
        )
    };
    match torch_pickle::read(path, format) {
        Ok(v) if !v.is_empty() => Ok(v.into_iter().collect()),
        Ok(_) => bail_usage!("{} holds no tensors: not a model's state dict", path.display()),
        Err(e) => bail_usage!(
            "{}: {e:#}; download it again, or convert it once to model.safetensors with: python -c \"import torch; from safetensors.torch import save_file; save_file({{k: v.contiguous() for k, v in torch.load('{}').items()}}, '{}', metadata={{'format': 'pt'}})\"",
            path.display(),
            path.display(),
            path.parent().unwrap_or(Path::new(".")).join("model.safetensors").display()
        ),
    }
}

/// Pre-training heads of the families' checkpoints: BERT's (`cls`), RoBERTa's
/// (`lm_head`), DistilBERT's masked LM, ELECTRA's discriminator and
/// generator, ALBERT's masked LM and sentence order.
const PRETRAINING_HEADS: [&str; 10] = [
    "cls.",
    "lm_head.",
    "vocab_transform.",
    "vocab_layer_norm.",
    "vocab_projector.",
    "discriminator_predictions.",
    "generator_predictions.",
    "generator_lm_head.",
    "predictions.",
    "sop_classifier.",
];

/// The name our model of `family` uses for a checkpoint tensor, or `None`
/// for tensors it never uses (buffers, pre-training heads).
pub fn our_name(stored: &str, family: Family) -> Option<String> {
    let mut name = stored.to_string();
    let unused = name.ends_with("position_ids")
        || name.contains(".cls.")
        || PRETRAINING_HEADS.iter().any(|head| name.starts_with(head));
    let prefix = family.prefix();
    if unused
        || (matches!(family, Family::Roberta | Family::Electra)
            && name.strip_prefix(&format!("{prefix}.")).unwrap_or(&name).starts_with("pooler."))
    {
        return None;
    }
    if name.contains("LayerNorm.") {
        if let Some(base) = name.strip_suffix(".gamma") {
            name = format!("{base}.weight");
        } else if let Some(base) = name.strip_suffix(".beta") {
            name = format!("{base}.bias");
        }
    }
    let head = name.starts_with("classifier.") || name.starts_with("pre_classifier.");
    if !name.starts_with(&format!("{prefix}.")) && !head {
        name = format!("{prefix}.{name}");
    }
    Some(name)
}

/// Whether a variable may be missing from a pre-trained checkpoint: it is what
/// fine-tuning adds.
fn is_new_part(name: &str) -> bool {
    name.starts_with("classifier.")
        || name.starts_with("bert.pooler.")
        || name.starts_with("albert.pooler.")
        || name.starts_with("pre_classifier.")
}

/// Copies a checkpoint into `vs` (converting to each variable's dtype). With
/// `require_head`, the classifier must be in the checkpoint (a fine-tuned
/// model); otherwise a classifier of another shape counts as new. New parts
/// (all linear layers) get Hugging Face's initialisation: weights drawn from
/// normal(0, `initializer_range`), zero biases.
pub fn load_into(
    vs: &VarStore,
    config: &BertConfig,
    tensors: &HashMap<String, Tensor>,
    what: &str,
    require_head: bool,
) -> Result<LoadReport> {
    let family = config.family();
    let mut by_ours: HashMap<String, &Tensor> = HashMap::new();
    let mut report = LoadReport::default();
    for (stored, t) in tensors {
        match our_name(stored, family) {
            Some(n) => {
                by_ours.insert(n, t);
            }
            None => report.unused.push(stored.clone()),
        }
    }
    let vars = vs.variables();
    let (mut missing, mut fresh) = (Vec::new(), Vec::new());
    let _guard = tch::no_grad_guard();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        match by_ours.remove(name.as_str()) {
            Some(src) if src.size() == var.size() => {
                let src = src.f_to_kind(var.kind())?.f_to_device(var.device())?;
                var.shallow_clone().f_copy_(&src).with_context(|| format!("loading {name}"))?;
                report.loaded += 1;
            }
            Some(src) if name.starts_with("classifier.") && !require_head => {
                report.new.push(format!("{name} (checkpoint has {:?})", src.size()));
                fresh.push(name.clone());
            }
            Some(src) => bail_usage!(
                "{what}: tensor {name} has shape {:?} but the model (from config.json) needs {:?}",
                src.size(),
                var.size()
            ),
            None => missing.push(name.clone()),
        }
    }
    report.unused.extend(by_ours.into_keys());
    report.unused.sort();
    let (new, broken): (Vec<String>, Vec<String>) =
        missing.into_iter().partition(|n| is_new_part(n) && !(require_head && n.starts_with("classifier.")));
    if !broken.is_empty() {
        let more = if broken.len() > 1 { format!(" and {} more", broken.len() - 1) } else { String::new() };
        if require_head && broken.iter().all(|n| n.starts_with("classifier.")) {
            bail_usage!(
                "{what} has no classification head ({}): it is a base model; fine-tune it first with `bert-classifier train`",
                family.head_weight()
            );
        }
        bail_usage!("{what} is not a complete {} checkpoint: it lacks {}{more}", family.prefix(), broken[0]);
    }
    for name in fresh.iter().chain(&new) {
        let mut var = vars[name].shallow_clone();
        let _ = match name.ends_with(".weight") {
            true => var.f_normal_(0.0, config.initializer_range)?,
            false => var.f_zero_()?,
        };
    }
    report.new.extend(new);
    Ok(report)
}

/// The names and tensors of a model's variables in float32 on the CPU, sorted:
/// what `model.safetensors` holds (Hugging Face names).
pub fn named_float_tensors(vs: &VarStore) -> Result<Vec<(String, Tensor)>> {
    let mut out: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| Ok((n, t.f_detach()?.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?)))
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The number of classes of a fine-tuned checkpoint, from its head's shape.
pub fn head_classes(tensors: &HashMap<String, Tensor>, family: Family) -> Option<i64> {
    tensors
        .iter()
        .find(|(k, _)| our_name(k, family).as_deref() == Some(family.head_weight()))
        .and_then(|(_, t)| t.size().first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_naming_convention() {
        let bert = |n: &str| our_name(n, Family::Bert);
        assert_eq!(bert("embeddings.word_embeddings.weight").unwrap(), "bert.embeddings.word_embeddings.weight");
        assert_eq!(
            bert("bert.encoder.layer.3.output.LayerNorm.gamma").unwrap(),
            "bert.encoder.layer.3.output.LayerNorm.weight"
        );
        assert_eq!(bert("embeddings.LayerNorm.beta").unwrap(), "bert.embeddings.LayerNorm.bias");
        assert_eq!(bert("classifier.weight").unwrap(), "classifier.weight");
        assert_eq!(bert("pooler.dense.weight").unwrap(), "bert.pooler.dense.weight");
        assert!(bert("embeddings.position_ids").is_none());
        assert!(bert("cls.predictions.bias").is_none());
        // `gamma` outside a LayerNorm is someone else's parameter: left alone.
        assert_eq!(bert("encoder.gamma").unwrap(), "bert.encoder.gamma");

        let roberta = |n: &str| our_name(n, Family::Roberta);
        assert_eq!(roberta("embeddings.word_embeddings.weight").unwrap(), "roberta.embeddings.word_embeddings.weight");
        assert_eq!(
            roberta("roberta.encoder.layer.0.output.dense.bias").unwrap(),
            "roberta.encoder.layer.0.output.dense.bias"
        );
        assert_eq!(roberta("classifier.out_proj.weight").unwrap(), "classifier.out_proj.weight");
        assert_eq!(roberta("classifier.dense.bias").unwrap(), "classifier.dense.bias");
        // RoBERTa's classifier reads <s> itself; a pre-trained pooler is not used.
        assert!(roberta("roberta.pooler.dense.weight").is_none());
        assert!(roberta("pooler.dense.bias").is_none());
        assert!(roberta("lm_head.dense.weight").is_none());

        let distil = |n: &str| our_name(n, Family::DistilBert);
        assert_eq!(
            distil("transformer.layer.5.ffn.lin1.weight").unwrap(),
            "distilbert.transformer.layer.5.ffn.lin1.weight"
        );
        assert_eq!(distil("pre_classifier.bias").unwrap(), "pre_classifier.bias");
        assert!(distil("vocab_projector.bias").is_none());

        let electra = |n: &str| our_name(n, Family::Electra);
        assert_eq!(electra("embeddings_project.weight").unwrap(), "electra.embeddings_project.weight");
        assert_eq!(electra("classifier.out_proj.bias").unwrap(), "classifier.out_proj.bias");
        assert!(electra("discriminator_predictions.dense.weight").is_none());

        let albert = |n: &str| our_name(n, Family::Albert);
        assert_eq!(
            albert("encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias").unwrap(),
            "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias"
        );
        assert!(albert("predictions.decoder.bias").is_none() && albert("sop_classifier.classifier.weight").is_none());
    }
}
