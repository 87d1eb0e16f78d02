//! BERT for sequence classification in tch, module for module the tree of
//! Hugging Face's `BertForSequenceClassification`, so its checkpoints load by
//! name: `bert.embeddings.*`, `bert.encoder.layer.N.*`, `bert.pooler.dense`,
//! `classifier`. RoBERTa-family checkpoints (`RobertaForSequenceClassification`)
//! are the same encoder under `roberta.`, with positions counted from after
//! the padding id, and a head whose dense layer (`classifier.dense`, in the
//! pooler's place) and output (`classifier.out_proj`) take `<s>` directly.
//! DistilBERT's layers are BERT's under other names (`distilbert.transformer.
//! layer.N.attention.q_lin`, `ffn.lin1`, `sa_layer_norm`, ...), without token
//! types or dropout after attention; its pooler is `pre_classifier` + ReLU.
//! ELECTRA's embeddings may be narrower than its layers (`embeddings_project`
//! widens them), and its head is RoBERTa's with GELU for tanh. ALBERT's are
//! too (`encoder.embedding_hidden_mapping_in`), and its layers share weights:
//! `encoder.albert_layer_groups.G.albert_layers.J` run for every layer of group G.
//!
//! Numerics follow `transformers`: LayerNorm with the config's eps, the exact
//! erf GELU, fused scaled-dot-product attention over the padding mask. With
//! bf16 the matmul inputs are cast (what autocast does); LayerNorm, softmax,
//! residual sums and the loss stay in float32 on float32 master weights.
//!
//! Classification reads only the `[CLS]` position of the last layer, so that
//! layer computes keys and values for every position but queries, attention
//! output and feed-forward for `[CLS]` alone: the same logits, and about a
//! sixth less work for a 6-layer model.

use anyhow::{Context, Result};
use tch::nn::{self, Init, LinearConfig};
use tch::{Kind, Tensor};

use super::attention;
use super::config::{Activation, BertConfig, Family};
use super::dropout::{Dropout, Site};
use super::int8_linear::Int8Linear;
use super::packed_linear::{self, Fused, PackedLinear};
use crate::train::Precision;

/// How a forward pass runs: compute precision and dropout (off for evaluation).
pub struct Pass<'a> {
    pub precision: Precision,
    pub dropout: Dropout<'a>,
}

impl Pass<'_> {
    pub fn eval(precision: Precision) -> Pass<'static> {
        Pass { precision, dropout: Dropout::Off }
    }
}

/// A batch of token ids `[batch, len]` and its padding mask (true = a token).
pub struct Batch {
    pub ids: Tensor,
    pub mask: Tensor,
    /// Token types `[batch, len]` for pairs of texts; `None`: type 0 everywhere.
    pub types: Option<Tensor>,
}

/// How an inference copy ([`BertClassifier::for_inference`]) holds the
/// weights of its products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InferenceWeights {
    /// Cast once to the compute precision, and packed for oneDNN on the CPU.
    Cast(Precision),
    /// The encoder's quantized to int8 (`--int8`), with fp32 around the products.
    Int8,
}

impl InferenceWeights {
    /// The precision of everything around the products.
    pub fn precision(self) -> Precision {
        match self {
            InferenceWeights::Cast(p) => p,
            InferenceWeights::Int8 => Precision::Fp32,
        }
    }
}

struct Linear {
    ws: Tensor,
    bs: Tensor,
    /// For inference on the CPU: the same weights packed once.
    packed: Option<Packed>,
}

/// A layer's weights packed for inference.
enum Packed {
    /// For oneDNN, in the compute precision.
    OneDnn(PackedLinear),
    /// Quantized to int8 for fbgemm (`--int8`).
    Int8(Int8Linear),
}

impl Linear {
    /// The same weights (ALBERT's layers share theirs).
    fn shallow(&self) -> Linear {
        Linear { ws: self.ws.shallow_clone(), bs: self.bs.shallow_clone(), packed: None }
    }

    fn new(p: nn::Path, input: i64, output: i64, init_range: f64) -> Linear {
        let cfg = LinearConfig { ws_init: normal(init_range), bs_init: Some(Init::Const(0.0)), bias: true };
        let l = nn::linear(p, input, output, cfg);
        let bs = l.bs.unwrap_or_else(|| Tensor::zeros([output], (Kind::Float, tch::Device::Cpu)));
        Linear { ws: l.ws, bs, packed: None }
    }

    fn is_int8(&self) -> bool {
        matches!(self.packed, Some(Packed::Int8(_)))
    }

    /// `x W^T + b` with inputs in the compute precision; the result stays in it.
    fn forward(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        self.forward_texts(x, precision, None)
    }

    /// [`Linear::forward`] over `[batch, len, in]` texts whose first
    /// `lengths` (see [`Masks`]) rows are tokens: int8 layers quantize each
    /// text over those alone.
    fn forward_texts(&self, x: &Tensor, precision: Precision, lengths: Option<&Tensor>) -> Result<Tensor> {
        match &self.packed {
            Some(Packed::OneDnn(p)) => return p.forward(&precision.cast(x), Fused::None),
            Some(Packed::Int8(q)) => return q.forward(x, lengths),
            None => {}
        }
        if precision == Precision::Fp32 && packed_linear::trains(&self.ws) {
            return packed_linear::linear(x, &self.ws, &self.bs);
        }
        Ok(precision.cast(x).f_linear(&precision.cast(&self.ws), Some(&precision.cast(&self.bs)))?)
    }

    /// `act(x W^T + b)`, the activation fused into the product where the
    /// weights are packed.
    fn forward_act(
        &self,
        x: &Tensor,
        precision: Precision,
        act: Activation,
        lengths: Option<&Tensor>,
    ) -> Result<Tensor> {
        let fused = match act {
            Activation::Gelu => Some(Fused::Gelu),
            Activation::GeluTanh => Some(Fused::GeluTanh),
            Activation::Relu => Some(Fused::Relu),
            Activation::Silu => None,
        };
        match (&self.packed, fused) {
            (Some(Packed::OneDnn(p)), Some(f)) => p.forward(&precision.cast(x), f),
            _ => activate(&self.forward_texts(x, precision, lengths)?, act),
        }
    }

    /// The same layer for inference: weights in the compute precision once,
    /// not at every batch, and packed for oneDNN on the CPU; or quantized.
    fn for_inference(&self, weights: InferenceWeights) -> Result<Linear> {
        let precision = match weights {
            InferenceWeights::Cast(precision) => precision,
            InferenceWeights::Int8 => {
                let packed = Some(Packed::Int8(Int8Linear::pack(&self.ws, &self.bs)?));
                return Ok(Linear { ws: self.ws.shallow_clone(), bs: self.bs.shallow_clone(), packed });
            }
        };
        let (ws, bs) = (precision.cast(&self.ws), precision.cast(&self.bs));
        let packed = match packed_linear::packs_for_inference(ws.kind()) {
            true => PackedLinear::pack(&ws, &bs)?.map(Packed::OneDnn),
            false => None,
        };
        Ok(Linear { ws, bs, packed })
    }
}

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::Gelu => x.f_gelu("none")?,
        Activation::GeluTanh => x.f_gelu("tanh")?,
        Activation::Relu => x.f_relu()?,
        Activation::Silu => x.f_silu()?,
    })
}

struct LayerNorm {
    ws: Tensor,
    bs: Tensor,
    eps: f64,
    size: i64,
}

impl LayerNorm {
    fn new(p: nn::Path, size: i64, eps: f64) -> LayerNorm {
        let cfg = nn::LayerNormConfig { eps, ..Default::default() };
        let ln = nn::layer_norm(p, vec![size], cfg);
        let ws = ln.ws.unwrap_or_else(|| Tensor::ones([size], (Kind::Float, tch::Device::Cpu)));
        let bs = ln.bs.unwrap_or_else(|| Tensor::zeros([size], (Kind::Float, tch::Device::Cpu)));
        LayerNorm { ws, bs, eps, size }
    }

    fn shallow(&self) -> LayerNorm {
        LayerNorm { ws: self.ws.shallow_clone(), bs: self.bs.shallow_clone(), eps: self.eps, size: self.size }
    }

    /// Always in float32, whatever the compute precision.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_to_kind(Kind::Float)?.f_layer_norm([self.size], Some(&self.ws), Some(&self.bs), self.eps, true)?)
    }
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    /// `None` for DistilBERT, which has no token types.
    token_type: Option<Tensor>,
    ln: LayerNorm,
    pad_id: i64,
    dropout: f64,
    family: Family,
}

impl Embeddings {
    fn new(p: nn::Path, c: &BertConfig) -> Embeddings {
        let init = normal(c.initializer_range);
        let width = c.embedding_width();
        Embeddings {
            word: (&p / "word_embeddings").var("weight", &[c.vocab_size, width], init),
            position: (&p / "position_embeddings").var("weight", &[c.max_position_embeddings, width], init),
            token_type: (c.family() != Family::DistilBert)
                .then(|| (&p / "token_type_embeddings").var("weight", &[c.type_vocab_size, width], init)),
            ln: LayerNorm::new(&p / "LayerNorm", width, c.layer_norm_eps),
            pad_id: c.pad_id(),
            dropout: c.hidden_dropout_prob,
            family: c.family(),
        }
    }

    fn shallow(&self) -> Embeddings {
        Embeddings {
            word: self.word.shallow_clone(),
            position: self.position.shallow_clone(),
            token_type: self.token_type.as_ref().map(Tensor::shallow_clone),
            ln: self.ln.shallow(),
            pad_id: self.pad_id,
            dropout: self.dropout,
            family: self.family,
        }
    }

    /// Token type 0 everywhere unless `types` gives them (pairs of texts, in
    /// models that have a second type), positions from 0 (BERT) or from
    /// `pad_id + 1` with padding at `pad_id` (RoBERTa).
    fn forward(&self, ids: &Tensor, types: Option<&Tensor>, pass: &Pass) -> Result<Tensor> {
        let len = ids.size()[1];
        // `padding_idx` keeps the [PAD] row's gradient at zero, as nn.Embedding does.
        let words = Tensor::f_embedding(&self.word, ids, self.pad_id, false, false)?;
        let positions = match self.family {
            Family::Bert | Family::DistilBert | Family::Electra | Family::Albert => {
                self.position.f_narrow(0, 0, len)?
            }
            Family::Roberta => {
                let tokens = ids.f_ne(self.pad_id)?.f_to_kind(Kind::Int64)?;
                let ids = tokens.f_cumsum(1, Kind::Int64)?.f_mul(&tokens)?.f_add_scalar(self.pad_id)?;
                Tensor::f_embedding(&self.position, &ids, self.pad_id, false, false)?
            }
        };
        let x = match (&self.token_type, types) {
            (Some(table), Some(t)) if table.size()[0] > 1 => {
                words.f_add(&Tensor::f_embedding(table, t, -1, false, false)?)?.f_add(&positions)?
            }
            (Some(table), _) => words.f_add(&table.f_get(0)?)?.f_add(&positions)?,
            (None, _) => words.f_add(&positions)?,
        };
        let x = self.ln.forward(&x)?;
        pass.dropout.apply(&x, self.dropout, Site::Embeddings)
    }
}

struct Layer {
    index: usize,
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_ln: LayerNorm,
    heads: i64,
    head_dim: i64,
    act: Activation,
    /// After the attention's output projection: BERT's hidden dropout, none in DistilBERT.
    attn_out_dropout: f64,
    /// After the feed-forward output: BERT's hidden dropout, none in ALBERT.
    ffn_out_dropout: f64,
    attn_dropout: f64,
    /// For inference, the projections of the whole input as one product;
    /// `None` in training.
    fused: Option<FusedProjection>,
}

/// Projections that read the same input, as one product: it reads the input
/// once (and with `--int8` quantizes it once) where separate products would
/// each read it.
enum FusedProjection {
    /// Query, key and value, `[3 * hidden, hidden]`.
    Qkv(Linear),
    /// Key and value, `[2 * hidden, hidden]`: a last layer, whose queries are
    /// projected for `[CLS]` alone.
    Kv(Linear),
}

/// A layer's parts under `encoder.layer.N` (BERT, RoBERTa, ELECTRA): query, key, value,
/// attention output, its LayerNorm, intermediate, output, its LayerNorm.
const BERT_LAYER: [&str; 8] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
];
/// The same under DistilBERT's `transformer.layer.N`.
const DISTILBERT_LAYER: [&str; 8] = [
    "attention.q_lin",
    "attention.k_lin",
    "attention.v_lin",
    "attention.out_lin",
    "sa_layer_norm",
    "ffn.lin1",
    "ffn.lin2",
    "output_layer_norm",
];

/// The same under ALBERT's `albert_layer_groups.G.albert_layers.J`.
const ALBERT_LAYER: [&str; 8] = [
    "attention.query",
    "attention.key",
    "attention.value",
    "attention.dense",
    "attention.LayerNorm",
    "ffn",
    "ffn_output",
    "full_layer_layer_norm",
];

/// normal(0, `stdev`) weights; zeros, without drawing, for `stdev` 0 (a model
/// built to have its weights loaded, see [`super::Classifier::build`]).
fn normal(stdev: f64) -> Init {
    match stdev == 0.0 {
        true => Init::Const(0.0),
        false => Init::Randn { mean: 0.0, stdev },
    }
}

/// `p` / each part of a dotted name.
fn sub<'a>(p: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    let mut parts = dotted.split('.');
    let first = p / parts.next().unwrap_or_default();
    parts.fold(first, |p, part| &p / part)
}

impl Layer {
    fn new(p: nn::Path, c: &BertConfig, index: usize) -> Layer {
        let (h, i, r, eps) = (c.hidden_size, c.intermediate_size, c.initializer_range, c.layer_norm_eps);
        let distil = c.family() == Family::DistilBert;
        let [q, k, v, ao, aln, inter, out, oln] = match c.family() {
            Family::DistilBert => DISTILBERT_LAYER,
            Family::Albert => ALBERT_LAYER,
            Family::Bert | Family::Roberta | Family::Electra => BERT_LAYER,
        };
        Layer {
            index,
            query: Linear::new(sub(&p, q), h, h, r),
            key: Linear::new(sub(&p, k), h, h, r),
            value: Linear::new(sub(&p, v), h, h, r),
            attn_out: Linear::new(sub(&p, ao), h, h, r),
            attn_ln: LayerNorm::new(sub(&p, aln), h, eps),
            intermediate: Linear::new(sub(&p, inter), h, i, r),
            output: Linear::new(sub(&p, out), i, h, r),
            out_ln: LayerNorm::new(sub(&p, oln), h, eps),
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            act: c.activation(),
            attn_out_dropout: if distil { 0.0 } else { c.hidden_dropout_prob },
            ffn_out_dropout: if c.family() == Family::Albert { 0.0 } else { c.hidden_dropout_prob },
            attn_dropout: c.attention_probs_dropout_prob,
            fused: None,
        }
    }

    /// This layer's weights as the layer at `index` (ALBERT runs one set of
    /// weights as several layers; each has dropout masks of its own).
    fn share(&self, index: usize) -> Layer {
        Layer {
            index,
            query: self.query.shallow(),
            key: self.key.shallow(),
            value: self.value.shallow(),
            attn_out: self.attn_out.shallow(),
            attn_ln: self.attn_ln.shallow(),
            intermediate: self.intermediate.shallow(),
            output: self.output.shallow(),
            out_ln: self.out_ln.shallow(),
            fused: None,
            ..*self
        }
    }

    /// The layer for inference (see [`Linear::for_inference`]), the rest
    /// shared, with its query, key and value as one product; a `last` layer,
    /// which classification runs for `[CLS]`'s queries alone, fuses key and
    /// value only.
    fn for_inference(&self, weights: InferenceWeights, last: bool) -> Result<Layer> {
        let all = [&self.query, &self.key, &self.value];
        let parts = if last { &all[1..] } else { &all[..] };
        let cat = |part: fn(&Linear) -> &Tensor| Tensor::f_cat(&parts.iter().map(|l| part(l)).collect::<Vec<_>>(), 0);
        let product = Linear { ws: cat(|l| &l.ws)?, bs: cat(|l| &l.bs)?, packed: None }.for_inference(weights)?;
        let fused = if last { FusedProjection::Kv(product) } else { FusedProjection::Qkv(product) };
        // The separate ones serve passes the fused product does not (a
        // `[CLS]`-only pass of a layer that fused its query).
        Ok(Layer {
            index: self.index,
            query: if last { self.query.for_inference(weights)? } else { self.query.shallow() },
            key: self.key.shallow(),
            value: self.value.shallow(),
            attn_out: self.attn_out.for_inference(weights)?,
            attn_ln: self.attn_ln.shallow(),
            intermediate: self.intermediate.for_inference(weights)?,
            output: self.output.for_inference(weights)?,
            out_ln: self.out_ln.shallow(),
            heads: self.heads,
            head_dim: self.head_dim,
            act: self.act,
            attn_out_dropout: self.attn_out_dropout,
            ffn_out_dropout: self.ffn_out_dropout,
            attn_dropout: self.attn_dropout,
            fused: Some(fused),
        })
    }

    /// `[batch, len, hidden]` -> `[batch, heads, len, head_dim]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.size();
        Ok(x.f_view([s[0], s[1], self.heads, self.head_dim])?.f_transpose(1, 2)?)
    }

    /// The layer's output at every position, or at `[CLS]` only (`cls_only`),
    /// which is all the classifier reads from the last layer.
    fn forward(&self, x: &Tensor, mask: &Masks, pass: &Pass, cls_only: bool) -> Result<Tensor> {
        let prec = pass.precision;
        let lengths = mask.lengths.as_ref();
        let queries_from = if cls_only { x.f_narrow(1, 0, 1)? } else { x.shallow_clone() };
        // Cast once for the three projections.
        let xc = prec.cast(x);
        let qc = if cls_only { xc.f_narrow(1, 0, 1)? } else { xc.shallow_clone() };
        let h = self.heads * self.head_dim;
        let (q, k, v) = match (&self.fused, cls_only) {
            (Some(FusedProjection::Qkv(qkv)), false) => {
                let y = qkv.forward_texts(&xc, prec, lengths)?;
                (y.f_narrow(2, 0, h)?, y.f_narrow(2, h, h)?, y.f_narrow(2, 2 * h, h)?)
            }
            (Some(FusedProjection::Kv(kv)), _) => {
                let y = kv.forward_texts(&xc, prec, lengths)?;
                (self.query.forward_texts(&qc, prec, lengths)?, y.f_narrow(2, 0, h)?, y.f_narrow(2, h, h)?)
            }
            _ => (
                self.query.forward_texts(&qc, prec, lengths)?,
                self.key.forward_texts(&xc, prec, lengths)?,
                self.value.forward_texts(&xc, prec, lengths)?,
            ),
        };
        let (q, k, v) = (self.split_heads(&q)?, self.split_heads(&k)?, self.split_heads(&v)?);
        let dropout = pass.dropout.is_on() && self.attn_dropout > 0.0;
        let ctx = if !dropout && attention::serves(&q, &k, &v) {
            attention::attend(&q, &k, &v, mask.attend.as_ref())?
        } else {
            let ctx = if dropout {
                self.attention_with_dropout(&q, &k, &v, mask, pass, cls_only)?
            } else {
                Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask.attend.as_ref(), 0.0, false, None, false)?
            };
            let s = ctx.size();
            ctx.f_transpose(1, 2)?.f_reshape([s[0], s[2], s[1] * s[3]])?
        };
        let a = self.attn_out.forward_texts(&ctx, prec, lengths)?.f_to_kind(Kind::Float)?;
        let a = pass.dropout.apply(&a, self.attn_out_dropout, Site::AttentionOutput(self.index))?;
        let a = self.attn_ln.forward(&a.f_add(&queries_from)?)?;
        let i = self.intermediate.forward_act(&a, prec, self.act, lengths)?;
        let o = self.output.forward_texts(&i, prec, lengths)?.f_to_kind(Kind::Float)?;
        let o = pass.dropout.apply(&o, self.ffn_out_dropout, Site::FeedForwardOutput(self.index))?;
        self.out_ln.forward(&o.f_add(&a)?)
    }

    /// Training on the CPU: softmax(q k^T / sqrt(d) + mask), keyed dropout on
    /// the probabilities, then times v. On a GPU the fused kernel drops itself.
    fn attention_with_dropout(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Masks,
        pass: &Pass,
        cls_only: bool,
    ) -> Result<Tensor> {
        if matches!(pass.dropout, Dropout::Torch) {
            return Ok(Tensor::f_scaled_dot_product_attention(
                q,
                k,
                v,
                mask.attend.as_ref(),
                self.attn_dropout,
                false,
                None,
                false,
            )?);
        }
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let (qs, keys) = (q.size(), k.size()[2]);
        let heads = qs[0] * qs[1];
        // mask + scale * q k^T as one product: the scaling and the mask ride
        // in the GEMM (its alpha, and beta = 1 over the mask) instead of two
        // passes over the scores, forward and backward. The mask is 0 or
        // -inf, which the compute precision holds exactly.
        let q3 = q.f_reshape([heads, qs[2], qs[3]])?;
        let kt = k.f_reshape([heads, keys, qs[3]])?.f_transpose(1, 2)?;
        let additive = mask.additive.as_ref().context("attention with dropout needs its additive mask")?;
        let scores = additive.f_baddbmm(&q3, &kt, 1.0, scale)?;
        let probs = scores.f_view([qs[0], qs[1], qs[2], keys])?.f_softmax(-1, Kind::Float)?;
        let rows: Vec<i64> = if cls_only { vec![0] } else { Vec::new() };
        let probs = pass.dropout.apply_attention(&probs, self.attn_dropout, Site::AttentionProbs(self.index), &rows)?;
        Ok(pass.precision.cast(&probs).f_matmul(v)?)
    }
}

/// ALBERT's layers in the order they run: layer `i` of `num_hidden_layers`
/// runs every layer of group `i * groups / layers` (as `transformers` counts),
/// with that group's weights.
fn albert_layers(groups_path: &nn::Path, c: &BertConfig) -> Vec<Layer> {
    let (groups, inner) = c.layer_groups();
    let weights: Vec<Vec<Layer>> = (0..groups as usize)
        .map(|g| (0..inner as usize).map(|j| Layer::new(groups_path / g / "albert_layers" / j, c, 0)).collect())
        .collect();
    let layers = c.num_hidden_layers;
    let mut out = Vec::new();
    for i in 0..layers {
        let g = (i as f64 / (layers as f64 / groups as f64)) as usize;
        for layer in &weights[g.min(weights.len() - 1)] {
            out.push(layer.share(out.len()));
        }
    }
    out
}

/// The padding mask in the two forms attention takes.
struct Masks {
    /// For the fused kernel: `None` where no text of a CPU batch is padded
    /// (its fastest path, and the usual case for long texts cut to
    /// `--max-len`), else `[batch, 1, 1, len]`, 0 where a token is and -inf on
    /// padding, in the compute precision (an additive mask runs faster there
    /// than a boolean one, which the kernel would convert at every layer).
    attend: Option<Tensor>,
    /// For training's attention with dropout: `[batch * heads, 1, len]`, 0
    /// where a token is, -inf on padding, in the compute precision, one row
    /// per (example, head), as a batched product's bias. `None` without dropout.
    additive: Option<Tensor>,
    /// For int8 layers, which quantize each text over its own tokens: per text
    /// of a padded CPU batch, how many rows hold its tokens (int64 `[batch]`,
    /// up to its last token). `None` where no text is padded, or no layer is int8.
    lengths: Option<Tensor>,
}

impl Masks {
    fn new(mask: &Tensor, heads: i64, pass: &Pass, int8: bool) -> Result<Masks> {
        let precision = pass.precision;
        let s = mask.size();
        let keep = mask.f_to_kind(Kind::Bool)?.f_view([s[0], 1, 1, s[1]])?;
        let zeros = Tensor::f_zeros(keep.size(), (Kind::Float, keep.device()))?;
        let bias = precision.cast(&zeros.f_masked_fill(&keep.f_logical_not()?, f64::NEG_INFINITY)?);
        // Reading the answer back waits for the device, which a GPU batch
        // should not; there the mask always goes to the kernel.
        let unpadded = mask.device() == tch::Device::Cpu && keep.f_all()?.f_int64_value(&[])? == 1;
        let additive = match pass.dropout.is_on() {
            true => Some(bias.f_expand([s[0], heads, 1, s[1]], false)?.f_reshape([s[0] * heads, 1, s[1]])?),
            false => None,
        };
        let lengths = match int8 && mask.device() == tch::Device::Cpu && !unpadded {
            true => {
                let positions = Tensor::f_arange_start(1, s[1] + 1, (Kind::Int64, mask.device()))?;
                Some(mask.f_to_kind(Kind::Int64)?.f_mul(&positions)?.f_amax([1].as_slice(), false)?)
            }
            false => None,
        };
        Ok(Masks { attend: (!unpadded).then_some(bias), additive, lengths })
    }
}

/// `BertModel`: embeddings, encoder, pooler (for RoBERTa, the head's dense layer).
struct Encoder {
    embeddings: Embeddings,
    /// ELECTRA's `embeddings_project`, where its embeddings are narrower than its layers.
    project: Option<Linear>,
    layers: Vec<Layer>,
    pooler: Linear,
}

/// `BertForSequenceClassification`: BERT, dropout, a linear head.
pub struct BertClassifier {
    bert: Encoder,
    classifier: Linear,
    head_dropout: f64,
    pub config: BertConfig,
    pub num_labels: i64,
}

impl BertClassifier {
    /// Builds the model under `p` (the VarStore root) with Hugging Face's names
    /// and initialisation (normal(0, initializer_range) weights, zero biases).
    pub fn new(p: &nn::Path, config: &BertConfig, num_labels: i64) -> BertClassifier {
        let b = p / config.family().prefix();
        let enc = match config.family() {
            Family::Bert | Family::Roberta | Family::Electra | Family::Albert => &b / "encoder" / "layer",
            Family::DistilBert => &b / "transformer" / "layer",
        };
        let (h, r) = (config.hidden_size, config.initializer_range);
        let (pooler, classifier) = match config.family() {
            Family::Bert => (&b / "pooler" / "dense", p / "classifier"),
            Family::Albert => (&b / "pooler", p / "classifier"),
            Family::Roberta | Family::Electra => (p / "classifier" / "dense", p / "classifier" / "out_proj"),
            Family::DistilBert => (p / "pre_classifier", p / "classifier"),
        };
        let width = config.embedding_width();
        let project = match config.family() {
            Family::Albert => Some(Linear::new(&b / "encoder" / "embedding_hidden_mapping_in", width, h, r)),
            _ => (width != h).then(|| Linear::new(&b / "embeddings_project", width, h, r)),
        };
        let layers = match config.family() {
            Family::Albert => albert_layers(&(&b / "encoder" / "albert_layer_groups"), config),
            _ => (0..config.num_hidden_layers as usize).map(|i| Layer::new(&enc / i, config, i)).collect(),
        };
        BertClassifier {
            bert: Encoder {
                embeddings: Embeddings::new(&b / "embeddings", config),
                project,
                layers,
                pooler: Linear::new(pooler, h, h, r),
            },
            classifier: Linear::new(classifier, h, num_labels, r),
            head_dropout: config.head_dropout(),
            config: config.clone(),
            num_labels,
        }
    }

    /// For inference: a copy whose matmul weights are cast to the compute
    /// precision once, so batches do not cast them again, and on the CPU
    /// packed for oneDNN where that pays
    /// ([`super::packed_linear::packs_for_inference`]), with query, key and
    /// value as one product. With [`InferenceWeights::Int8`] (on the CPU only)
    /// the encoder's linear layers are quantized to int8 instead
    /// ([`super::int8_linear`]); the pooler and the head, which see one row
    /// per text, stay in fp32. `None` in fp32 on a GPU, where there is nothing
    /// to do. Embeddings and LayerNorms are shared, in float32.
    pub fn for_inference(&self, weights: InferenceWeights) -> Result<Option<BertClassifier>> {
        let cpu = self.classifier.ws.device() == tch::Device::Cpu;
        if weights == InferenceWeights::Cast(Precision::Fp32) && !cpu {
            return Ok(None);
        }
        // The pooler and the head in the precision around the products.
        let head = InferenceWeights::Cast(weights.precision());
        let n = self.bert.layers.len();
        Ok(Some(BertClassifier {
            bert: Encoder {
                embeddings: self.bert.embeddings.shallow(),
                project: self.bert.project.as_ref().map(|p| p.for_inference(head)).transpose()?,
                layers: (self.bert.layers.iter().enumerate())
                    .map(|(i, l)| l.for_inference(weights, i + 1 == n))
                    .collect::<Result<_>>()?,
                pooler: self.bert.pooler.for_inference(head)?,
            },
            classifier: self.classifier.for_inference(head)?,
            head_dropout: self.head_dropout,
            config: self.config.clone(),
            num_labels: self.num_labels,
        }))
    }

    /// The last layer's hidden states at every position `[batch, len, hidden]`
    /// (`BertModel`'s `last_hidden_state`).
    pub fn hidden_states(&self, batch: &Batch, pass: &Pass) -> Result<Tensor> {
        self.encode(batch, pass, false)
    }

    fn encode(&self, batch: &Batch, pass: &Pass, cls_only_last: bool) -> Result<Tensor> {
        let int8 = self.bert.layers.first().is_some_and(|l| l.attn_out.is_int8());
        let masks = Masks::new(&batch.mask, self.config.num_attention_heads, pass, int8)?;
        let mut x = self.bert.embeddings.forward(&batch.ids, batch.types.as_ref(), pass)?;
        if let Some(project) = &self.bert.project {
            x = project.forward(&x, pass.precision)?.f_to_kind(Kind::Float)?;
        }
        let n = self.bert.layers.len();
        for (i, layer) in self.bert.layers.iter().enumerate() {
            x = layer.forward(&x, &masks, pass, cls_only_last && i + 1 == n)?;
        }
        Ok(x)
    }

    /// Class logits `[batch, num_labels]` in float32.
    pub fn logits(&self, batch: &Batch, pass: &Pass) -> Result<Tensor> {
        let h = self.encode(batch, pass, true)?;
        let cls = h.f_narrow(1, 0, 1)?;
        let cls = match self.config.family() {
            Family::Bert | Family::DistilBert | Family::Albert => cls,
            Family::Roberta | Family::Electra => pass.dropout.apply(&cls, self.head_dropout, Site::HeadInput)?,
        };
        let cls = cls.f_squeeze_dim(1)?;
        let pooled = self.bert.pooler.forward(&cls, pass.precision)?;
        let pooled = match self.config.family() {
            Family::Bert | Family::Roberta | Family::Albert => pooled.f_tanh()?,
            Family::DistilBert => pooled.f_relu()?,
            Family::Electra => pooled.f_gelu("none")?,
        };
        let pooled = pooled.f_to_kind(Kind::Float)?;
        let s = pooled.size();
        let pooled = pass.dropout.apply(&pooled.f_view([s[0], 1, s[1]])?, self.head_dropout, Site::Head)?;
        Ok(self.classifier.forward(&pooled.f_view([s[0], s[1]])?, pass.precision)?.f_to_kind(Kind::Float)?)
    }
}

/// The loss `transformers` trains a classifier with: mean cross-entropy of
/// `logits` against class ids `labels`, or for multi-label targets (a float
/// `[rows, labels]` tensor of 0s and 1s) the mean binary cross-entropy of each
/// label's sigmoid (`BCEWithLogitsLoss`).
pub fn loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    if labels.kind() == Kind::Float {
        return Ok(logits.f_binary_cross_entropy_with_logits::<Tensor>(labels, None, None, tch::Reduction::Mean)?);
    }
    Ok(logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100)?)
}

/// [`loss`] summed over rows (evaluation sums over ranks, then divides
/// once by the rows): a multi-label row's is the mean over its labels.
pub fn loss_sum(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    if labels.kind() == Kind::Float {
        let labels_per_row = labels.size().last().copied().unwrap_or(1).max(1) as f64;
        let sum = logits.f_binary_cross_entropy_with_logits::<Tensor>(labels, None, None, tch::Reduction::Sum)?;
        return Ok(sum.f_div_scalar(labels_per_row)?);
    }
    Ok(logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss::<Tensor>(labels, None, tch::Reduction::Sum, -100)?)
}

#[cfg(test)]
mod tests {
    use super::super::dropout::DropoutKeys;
    use super::*;

    const SMALL: &str = r#"{"hidden_act":"gelu","hidden_size":32,"intermediate_size":64,"layer_norm_eps":1e-12,
        "max_position_embeddings":64,"model_type":"bert","num_attention_heads":4,"num_hidden_layers":2,
        "pad_token_id":0,"type_vocab_size":2,"vocab_size":100}"#;

    /// A classifier of `labels` classes on `config`, initialised from `seed`.
    fn small_model(config: &BertConfig, seed: i64, labels: i64) -> (nn::VarStore, BertClassifier) {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = BertClassifier::new(&vs.root(), config, labels);
        (vs, model)
    }

    /// `texts` rows of token ids (0 is padding) as a batch.
    fn batch(ids: &[i64], texts: i64) -> Batch {
        let ids = Tensor::from_slice(ids).view([texts, -1]);
        Batch { mask: ids.ne(0), ids, types: None }
    }

    #[test]
    fn inference_copies_give_the_logits_of_the_model() {
        let (_vs, model) = small_model(&BertConfig::from_json(SMALL).unwrap(), 7, 3);
        let batch = batch(&[2, 17, 45, 9, 3, 0, 2, 88, 3, 0, 0, 0], 2);
        let _guard = tch::no_grad_guard();
        let max_diff = |a: &Tensor, b: &Tensor| a.f_sub(b).unwrap().abs().max().double_value(&[]);
        let fp32 = model.logits(&batch, &Pass::eval(Precision::Fp32)).unwrap();
        assert_eq!(fp32.size(), vec![2, 3]);
        // fp32: packed for oneDNN where that pays, fused query, key and value.
        let copy = model.for_inference(InferenceWeights::Cast(Precision::Fp32)).unwrap().unwrap();
        let got = copy.logits(&batch, &Pass::eval(Precision::Fp32)).unwrap();
        assert!(max_diff(&fp32, &got) < 1e-5, "fp32 inference logits differ by {}", max_diff(&fp32, &got));
        // bf16: weights cast once give what casting at every batch gives, and
        // stay close to fp32.
        let pass = Pass::eval(Precision::Bf16);
        let per_batch = model.logits(&batch, &pass).unwrap();
        // Where oneDNN cannot pack bf16 (an AVX2-only CPU) the layers stay
        // unpacked, still cast once.
        let once = model
            .for_inference(InferenceWeights::Cast(Precision::Bf16))
            .unwrap()
            .unwrap()
            .logits(&batch, &pass)
            .unwrap();
        assert!(max_diff(&per_batch, &once) < 1e-2, "bf16 cast once vs per batch: {}", max_diff(&per_batch, &once));
        assert!(max_diff(&fp32, &once) < 0.05);
        // int8 (fused query, key and value in the first layer): near fp32.
        if super::super::int8_linear::unavailable(tch::Device::Cpu).is_none() {
            let int8 = model.for_inference(InferenceWeights::Int8).unwrap().unwrap();
            let got = int8.logits(&batch, &Pass::eval(Precision::Fp32)).unwrap();
            assert!(max_diff(&fp32, &got) < 0.05, "int8 logits differ by {}", max_diff(&fp32, &got));
        }
    }

    #[test]
    fn int8_results_of_a_text_do_not_depend_on_its_batch() {
        if super::super::int8_linear::unavailable(tch::Device::Cpu).is_some() {
            return;
        }
        let (_vs, model) = small_model(&BertConfig::from_json(SMALL).unwrap(), 5, 2);
        let int8 = model.for_inference(InferenceWeights::Int8).unwrap().unwrap();
        let _guard = tch::no_grad_guard();
        let pass = Pass::eval(Precision::Fp32);
        let (alone, beside) =
            (batch(&[2, 17, 45, 3], 1), batch(&[2, 17, 45, 3, 0, 0, 0, 0, 2, 61, 88, 7, 5, 90, 33, 3], 2));
        // Beside a longer text, padded: each text keeps its own activation
        // range, so only fp32 rounding in attention and LayerNorm differs
        // (one range per batch moves these hidden states by about 1e-3).
        let want = int8.hidden_states(&alone, &pass).unwrap();
        let got = int8.hidden_states(&beside, &pass).unwrap().narrow(0, 0, 1).narrow(1, 0, 4);
        let diff = want.f_sub(&got).unwrap().abs().max().double_value(&[]);
        assert!(diff < 1e-5, "a text's int8 hidden states moved by {diff} with its batch");
        let want = int8.logits(&alone, &pass).unwrap();
        let got = int8.logits(&beside, &pass).unwrap().narrow(0, 0, 1);
        let diff = want.f_sub(&got).unwrap().abs().max().double_value(&[]);
        assert!(diff < 1e-6, "a text's int8 logits moved by {diff} with its batch");
    }

    #[test]
    fn unpadded_batches_give_the_logits_of_padded_ones() {
        // A batch without padding takes the kernel's mask-free path; the same
        // texts beside a longer one are padded and masked.
        let (_vs, model) = small_model(&BertConfig::from_json(SMALL).unwrap(), 3, 2);
        let unpadded = batch(&[2, 17, 45, 9, 3, 2, 88, 7, 5, 3], 2);
        let padded = batch(&[2, 17, 45, 9, 3, 0, 0, 2, 88, 7, 5, 3, 0, 0, 2, 11, 12, 13, 14, 15, 3], 3);
        let _guard = tch::no_grad_guard();
        let pass = Pass::eval(Precision::Fp32);
        let inference = model.for_inference(InferenceWeights::Cast(Precision::Fp32)).unwrap();
        for m in std::iter::once(&model).chain(inference.as_ref()) {
            let alone = m.logits(&unpadded, &pass).unwrap();
            let beside = m.logits(&padded, &pass).unwrap().narrow(0, 0, 2);
            let diff = alone.f_sub(&beside).unwrap().abs().max().double_value(&[]);
            assert!(diff < 1e-5, "unpadded and padded logits differ by {diff}");
            let hidden = m.hidden_states(&unpadded, &pass).unwrap();
            let hidden_beside = m.hidden_states(&padded, &pass).unwrap().narrow(0, 0, 2).narrow(1, 0, 5);
            let diff = hidden.f_sub(&hidden_beside).unwrap().abs().max().double_value(&[]);
            assert!(diff < 1e-5, "unpadded and padded hidden states differ by {diff}");
        }
    }

    #[test]
    fn training_attention_computes_what_the_fused_kernel_does() {
        // Dropout that (practically) never drops: the training path's own
        // attention (mask and scale inside one batched product, then softmax,
        // the keyed mask, times v) must give the fused kernel's result, over
        // padding, at every position and at [CLS] alone.
        let config = BertConfig::from_json(&SMALL.replace(
            "\"hidden_size\":32,",
            "\"hidden_size\":32,\"hidden_dropout_prob\":0.0,\"attention_probs_dropout_prob\":1e-12,",
        ))
        .unwrap();
        let (_vs, model) = small_model(&config, 11, 2);
        let batch = batch(&[2, 17, 45, 9, 3, 0, 2, 88, 3, 0, 0, 0], 2);
        let keys = DropoutKeys::new(5, 0, vec![0, 1], config.max_position_embeddings);
        let _guard = tch::no_grad_guard();
        let max_diff = |a: &Tensor, b: &Tensor| a.f_sub(b).unwrap().abs().max().double_value(&[]);
        for precision in [Precision::Fp32, Precision::Bf16] {
            let train = Pass { precision, dropout: Dropout::Keyed(&keys) };
            assert!(train.dropout.is_on());
            let eval = Pass::eval(precision);
            let tol = if precision == Precision::Fp32 { 1e-5 } else { 0.05 };
            let (a, b) = (model.hidden_states(&batch, &train).unwrap(), model.hidden_states(&batch, &eval).unwrap());
            // Padded positions attend too (their outputs are never read), so compare tokens only.
            let tokens = batch.mask.unsqueeze(-1);
            let d = max_diff(&a.f_mul(&tokens).unwrap(), &b.f_mul(&tokens).unwrap());
            assert!(d < tol, "{precision:?} hidden states differ by {d}");
            let (a, b) = (model.logits(&batch, &train).unwrap(), model.logits(&batch, &eval).unwrap());
            assert!(max_diff(&a, &b) < tol, "{precision:?} logits differ by {}", max_diff(&a, &b));
        }
    }
}
