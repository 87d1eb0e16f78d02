//! Checkpoints and model files in the safetensors format, written atomically.
//!
//! A checkpoint is one file: the model's tensors, the optimizer's state, and the
//! trainer's own state as JSON in the safetensors metadata (key `hpcml`). One
//! file means one atomic rename: an interrupted save leaves the previous
//! checkpoint intact. The same reader and writer serve Hugging Face
//! `model.safetensors` files (any float dtype; stored names kept).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use crate::report::write_atomic;

const META_KEY: &str = "hpcml";

/// Tensors with their stored names, sorted by name.
pub type NamedTensors = Vec<(String, Tensor)>;

struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        k => return Err(anyhow!("cannot store tensors of kind {k:?}")),
    })
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        d => return Err(anyhow!("unsupported tensor dtype {d:?}")),
    })
}

fn owned(t: &Tensor) -> Result<Owned> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let dtype = dtype_of(t.kind())?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(Owned { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), data })
}

/// Writes named tensors (and optional JSON state) to `path` atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)], state: Option<&Value>) -> Result<()> {
    write_safetensors_with_metadata(path, tensors, state, &[])
}

/// [`write_safetensors`] with extra string metadata beside the state, e.g.
/// `("format", "pt")`, which `transformers` requires of a `model.safetensors`.
pub fn write_safetensors_with_metadata(
    path: &Path,
    tensors: &[(String, Tensor)],
    state: Option<&Value>,
    metadata: &[(&str, &str)],
) -> Result<()> {
    let owned: Vec<(String, Owned)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), owned(t).with_context(|| format!("tensor '{n}'"))?)))
        .collect::<Result<_>>()?;
    let mut meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if let Some(s) = state {
        meta.insert(META_KEY.to_string(), s.to_string());
    }
    let meta = if meta.is_empty() { None } else { Some(meta) };
    let views: Vec<(&str, &Owned)> = owned.iter().map(|(n, o)| (n.as_str(), o)).collect();
    let bytes = safetensors::tensor::serialize(views, &meta).map_err(|e| anyhow!("{e:?}"))?;
    write_atomic(path, |w| Ok(w.write_all(&bytes)?)).with_context(|| format!("saving {}", path.display()))
}

/// Reads every tensor of a safetensors file (on the CPU, in its stored dtype)
/// and the JSON state, if the file has one.
pub fn read_safetensors(path: &Path) -> Result<(NamedTensors, Option<Value>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        anyhow!("{} is not a valid safetensors file ({e:?}); it may be truncated or corrupt", path.display())
    })?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).with_context(|| format!("{}: tensor '{name}'", path.display()))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((name, Tensor::f_from_data_size(view.data(), &shape, kind)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| anyhow!("{}: {e:?}", path.display()))?;
    let state = match meta.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        Some(s) => Some(serde_json::from_str(s).with_context(|| format!("{}: bad trainer state", path.display()))?),
        None => None,
    };
    Ok((out, state))
}

/// A training checkpoint: tensors by name and the trainer's JSON state.
pub struct Checkpoint {
    pub tensors: HashMap<String, Tensor>,
    pub state: Value,
}

impl Checkpoint {
    pub fn save(path: &Path, tensors: &[(String, Tensor)], state: &Value) -> Result<()> {
        write_safetensors(path, tensors, Some(state))
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let (tensors, state) = read_safetensors(path)?;
        let state = state
            .ok_or_else(|| anyhow!("{} holds tensors but no trainer state: not an hpcml checkpoint", path.display()))?;
        Ok(Checkpoint { tensors: tensors.into_iter().collect(), state })
    }

    /// Copies the saved values into `dst` (same names; shapes must match).
    pub fn restore(&self, names: &[String], dst: &[Tensor]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, t) in names.iter().zip(dst) {
            let src = self.tensors.get(name).ok_or_else(|| anyhow!("checkpoint lacks tensor '{name}'"))?;
            if src.size() != t.size() {
                return Err(anyhow!(
                    "checkpoint tensor '{name}' has shape {:?}, the model has {:?}",
                    src.size(),
                    t.size()
                ));
            }
            t.shallow_clone().f_copy_(&src.f_to_kind(t.kind())?.f_to_device(t.device())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tensors_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25]).reshape([3, 1]);
        let b = Tensor::from_slice(&[7i64]);
        let c = Tensor::from_slice(&[0.5f32, 1.0]).to_kind(Kind::BFloat16);
        let tensors = vec![("w".to_string(), a.shallow_clone()), ("n".to_string(), b), ("h".to_string(), c)];
        Checkpoint::save(&path, &tensors, &serde_json::json!({"step": 12})).unwrap();
        let ck = Checkpoint::load(&path).unwrap();
        assert_eq!(ck.state["step"], 12);
        assert!(ck.tensors["w"].equal(&a));
        assert_eq!(ck.tensors["h"].kind(), Kind::BFloat16);
        assert_eq!(ck.tensors["n"].int64_value(&[0]), 7);
        let dst = Tensor::zeros([3, 1], (Kind::Float, Device::Cpu));
        ck.restore(&["w".to_string()], &[dst.shallow_clone()]).unwrap();
        assert!(dst.equal(&a));
        let wrong = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        assert!(ck.restore(&["w".to_string()], &[wrong]).is_err());
    }

    #[test]
    fn extra_metadata_sits_beside_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let t = vec![("w".to_string(), Tensor::from_slice(&[1.0f32]))];
        write_safetensors_with_metadata(&path, &t, Some(&serde_json::json!({"k": 1})), &[("format", "pt")]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        let (_, state) = read_safetensors(&path).unwrap();
        assert_eq!(state.unwrap()["k"], 1);
        write_safetensors(&path, &t, None).unwrap();
        let (_, state) = read_safetensors(&path).unwrap();
        assert!(state.is_none());
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        Checkpoint::save(
            &path,
            &[("w".into(), Tensor::ones([100], (Kind::Float, Device::Cpu)))],
            &serde_json::json!({}),
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = Checkpoint::load(&path).err().unwrap().to_string();
        assert!(err.contains("truncated or corrupt"), "{err}");
    }
}
