//! `pytorch_model.bin`: what `torch.save` writes, read without Python. Two
//! formats: the zip archive of PyTorch >= 1.6 (`<name>/data.pkl` and one raw
//! file per storage, `<name>/data/<key>`), and the legacy format before it,
//! which many Hub checkpoints uploaded in 2019 and 2020 still are: five
//! pickles (a magic number, the format's version, the writer's type sizes,
//! the object, the storage keys in the order their bytes follow) and then each
//! storage as an 8-byte element count and its elements.
//!
//! libtorch's own reader handles neither the legacy format nor a zip archive
//! of the `OrderedDict` with `_metadata` that `model.state_dict()` returns and
//! older `transformers` saved as it was. A state dict needs only a small part
//! of the pickle machine: no code runs here, and any callable other than the
//! few that rebuild tensors and dicts becomes an opaque value.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Kind, Tensor};

/// `torch.serialization.MAGIC_NUMBER`, the first pickle of a legacy file.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Which of `torch.save`'s formats a file's first bytes begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Zip,
    Legacy,
}

impl Format {
    pub fn of(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"PK\x03\x04") {
            Some(Format::Zip)
        } else if head.len() >= 14 && head[..4] == [0x80, 0x02, 0x8a, 0x0a] && head[4..14] == MAGIC_NUMBER {
            // PROTO 2, LONG1 of 10 bytes, then the magic number.
            Some(Format::Legacy)
        } else {
            None
        }
    }
}

/// Every tensor of the state dict `torch.save` wrote to `path`, by name, in
/// the format `format`. A checkpoint that wraps its state dict
/// (`{"state_dict": {...}, "epoch": 3}`) gives the tensors of the inner dict.
pub fn read(path: &Path, format: Format) -> Result<Vec<(String, Tensor)>> {
    let (object, storages) = match format {
        Format::Zip => read_zip(path)?,
        Format::Legacy => read_legacy(path)?,
    };
    let dict = state_dict(object)?;
    let mut tensors = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let storage =
            storages.get(&t.storage.key).ok_or_else(|| anyhow!("{name}: its storage {} is missing", t.storage.key))?;
        let base = match &t.storage.view {
            Some((offset, size)) => storage.f_narrow(0, *offset, *size)?,
            None => storage.shallow_clone(),
        };
        let len = base.size()[0];
        let extent = t.size.iter().zip(&t.stride).map(|(n, s)| (n - 1) * s).sum::<i64>() + t.offset;
        if t.size.iter().all(|&n| n > 0) && (t.offset < 0 || extent >= len) {
            bail!("{name}: shape {:?} reaches past its storage of {len} elements", t.size);
        }
        let view = base.f_as_strided(&t.size, &t.stride, Some(t.offset))?;
        // A copy of its own: tensors sharing a storage (tied embeddings) or
        // viewing part of it stay independent, as after torch.load and clone.
        // A strided view's contiguous form is already one.
        let own = if view.is_contiguous() { view.copy() } else { view.f_contiguous()? };
        tensors.push((name, own));
    }
    Ok(tensors)
}

/// The unpickled object and its storages by key, each a flat tensor.
type Unpickled = (Value, HashMap<String, Tensor>);

fn read_zip(path: &Path) -> Result<Unpickled> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_len = file.metadata()?.len();
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| anyhow!("not a readable zip archive ({e}); is it truncated?"))?;
    let pkl = zip.file_names().find(|n| n.ends_with("/data.pkl") || *n == "data.pkl").map(str::to_string);
    let pkl = pkl.ok_or_else(|| anyhow!("a zip archive without data.pkl: not written by torch.save"))?;
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let data = entry(&mut zip, &pkl, file_len)?;
    let mut r = Reader { remaining: data.len() as u64, input: Cursor::new(data), storages: HashMap::new() };
    let object = r.pickle()?;
    let mut storages = HashMap::new();
    for (key, kind) in r.storages {
        let bytes = entry(&mut zip, &format!("{prefix}data/{key}"), file_len)?;
        let numel = (bytes.len() / kind.elt_size_in_bytes()) as i64;
        storages.insert(key, Tensor::f_from_data_size(&bytes, &[numel], kind)?);
    }
    Ok((object, storages))
}

fn entry(zip: &mut zip::ZipArchive<BufReader<File>>, name: &str, file_len: u64) -> Result<Vec<u8>> {
    let mut f = zip.by_name(name).map_err(|e| anyhow!("{name}: {e} (is the file truncated?)"))?;
    // The size an entry claims is not trusted beyond what the file holds.
    let mut data = Vec::with_capacity(f.size().min(file_len) as usize);
    f.read_to_end(&mut data).map_err(|e| anyhow!("{name}: {e} (is the file truncated?)"))?;
    Ok(data)
}

fn read_legacy(path: &Path) -> Result<Unpickled> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut r = Reader { input: BufReader::with_capacity(1 << 20, file), remaining: len, storages: HashMap::new() };
    let magic = r.pickle()?;
    if !matches!(magic, Value::Big(ref b) if b[..] == MAGIC_NUMBER) {
        bail!("not a legacy torch.save file (no magic number)");
    }
    match r.pickle()? {
        Value::Int(PROTOCOL_VERSION) => {}
        v => bail!("legacy torch.save format version {v:?}, not {PROTOCOL_VERSION}"),
    }
    if let Value::Dict(info) = r.pickle()? {
        let little = info.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == "little_endian"));
        if matches!(little, Some((_, Value::Bool(false)))) {
            bail!("written on a big-endian machine");
        }
    }
    let object = r.pickle()?;
    let keys = match r.pickle()? {
        Value::List(keys) => keys,
        v => bail!("expected the list of storage keys, found {v:?}"),
    };
    let mut storages = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else { bail!("a storage key that is not a string: {key:?}") };
        let kind = *r.storages.get(&key).ok_or_else(|| anyhow!("storage {key} is listed but no tensor uses it"))?;
        let numel = i64::from_le_bytes(r.take::<8>()?);
        let size = u64::try_from(numel).ok().and_then(|n| n.checked_mul(kind.elt_size_in_bytes() as u64));
        let Some(size) = size.filter(|&s| s <= r.remaining) else {
            bail!("storage {key} claims {numel} elements, more than the file holds (is it truncated?)");
        };
        let mut data = vec![0u8; size as usize];
        r.read_exact(&mut data)?;
        storages.insert(key, Tensor::f_from_data_size(&data, &[numel], kind)?);
    }
    Ok((object, storages))
}

/// The name → tensor entries of the unpickled object, or of the one dict of
/// tensors it wraps.
fn state_dict(object: Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(items) = object else { bail!("the pickled object is not a dict of tensors") };
    let tensors = |items: &[(Value, Value)]| -> Vec<(String, TensorRef)> {
        items
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Tensor(t)) => Some((k.clone(), t.clone())),
                _ => None,
            })
            .collect()
    };
    let top = tensors(&items);
    if !top.is_empty() {
        return Ok(top);
    }
    let mut inner = items.iter().filter_map(|(_, v)| match v {
        Value::Dict(d) => Some(tensors(d)).filter(|t| !t.is_empty()),
        _ => None,
    });
    match (inner.next(), inner.next()) {
        (Some(t), None) => Ok(t),
        (None, _) => bail!("the pickled dict holds no tensors"),
        (Some(_), Some(_)) => {
            bail!("the pickled dict holds several dicts of tensors; save the model's state_dict alone")
        }
    }
}

#[derive(Clone, Debug)]
struct StorageRef {
    key: String,
    /// A view of part of the storage (PyTorch before 1.0): element offset and count.
    view: Option<(i64, i64)>,
}

#[derive(Clone, Debug)]
struct TensorRef {
    storage: StorageRef,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

#[derive(Clone, Debug)]
enum Value {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    /// An integer too long for i64, its little-endian two's-complement bytes.
    Big(Vec<u8>),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// What an unknown callable would have made; never looked into.
    Object,
}

struct Reader<R> {
    input: R,
    remaining: u64,
    /// The element type of each storage key, from the persistent ids.
    storages: HashMap<String, Kind>,
}

impl<R: BufRead> Reader<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).context("the file ends early (is it truncated?)")?;
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read_exact(&mut b)?;
        Ok(b)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    /// `n` bytes, refusing lengths the rest of the file cannot hold.
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > self.remaining {
            bail!("a pickled string of {n} bytes runs past the end of the file (is it truncated?)");
        }
        let mut b = vec![0u8; n as usize];
        self.read_exact(&mut b)?;
        Ok(b)
    }

    fn text(&mut self, n: u64) -> Result<String> {
        String::from_utf8(self.bytes(n)?).map_err(|_| anyhow!("a pickled string is not UTF-8"))
    }

    fn line(&mut self) -> Result<String> {
        let mut s = String::new();
        let n = self.input.read_line(&mut s)?;
        self.remaining = self.remaining.saturating_sub(n as u64);
        s.pop().filter(|&c| c == '\n').ok_or_else(|| anyhow!("a pickled name runs past the end of the file"))?;
        Ok(s)
    }

    /// One pickle, up to its STOP.
    fn pickle(&mut self) -> Result<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    self.byte()?; // PROTO
                }
                0x95 => {
                    self.take::<8>()?; // FRAME
                }
                b'.' => return stack.pop().ok_or_else(|| anyhow!("an empty pickle")),
                b'(' => stack.push(Value::Mark),
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'J' => stack.push(Value::Int(i32::from_le_bytes(self.take()?).into())),
                b'K' => stack.push(Value::Int(self.byte()?.into())),
                b'M' => stack.push(Value::Int(u16::from_le_bytes(self.take()?).into())),
                0x8a => {
                    let n = self.byte()?;
                    let b = self.bytes(n.into())?;
                    stack.push(long(b));
                }
                0x8b => {
                    let n = u32::from_le_bytes(self.take()?);
                    let b = self.bytes(n.into())?;
                    stack.push(long(b));
                }
                b'G' => {
                    self.take::<8>()?; // a float
                    stack.push(Value::Object);
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.take()?);
                    stack.push(Value::Str(self.text(n.into())?));
                }
                0x8c => {
                    let n = self.byte()?;
                    stack.push(Value::Str(self.text(n.into())?));
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.take()?);
                    stack.push(Value::Str(self.text(n)?));
                }
                // Python 2's byte strings: storage keys and names, ASCII.
                b'T' => {
                    let n = u32::from_le_bytes(self.take()?);
                    stack.push(Value::Str(String::from_utf8_lossy(&self.bytes(n.into())?).into_owned()));
                }
                b'U' => {
                    let n = self.byte()?;
                    stack.push(Value::Str(String::from_utf8_lossy(&self.bytes(n.into())?).into_owned()));
                }
                // Byte strings: a state dict's tensors need none.
                b'B' => {
                    let n = u32::from_le_bytes(self.take()?);
                    self.bytes(n.into())?;
                    stack.push(Value::Object);
                }
                b'C' => {
                    let n = self.byte()?;
                    self.bytes(n.into())?;
                    stack.push(Value::Object);
                }
                b')' => stack.push(Value::Tuple(Vec::new())),
                b']' => stack.push(Value::List(Vec::new())),
                b'}' => stack.push(Value::Dict(Vec::new())),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if stack.len() < n {
                        bail!("a pickled tuple with too few items");
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items));
                }
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::List(items));
                }
                b'd' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::Dict(pairs(items)?));
                }
                b'a' => {
                    let v = pop(&mut stack)?;
                    append(&mut stack, vec![v])?;
                }
                b'e' => {
                    let items = pop_mark(&mut stack)?;
                    append(&mut stack, items)?;
                }
                b's' => {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    dict_of(&mut stack)?.push((k, v));
                }
                b'u' => {
                    let items = pop_mark(&mut stack)?;
                    let items = pairs(items)?;
                    dict_of(&mut stack)?.extend(items);
                }
                b'q' => {
                    let i = self.byte()?;
                    memo.insert(i.into(), top(&stack)?.clone());
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.take()?);
                    memo.insert(i, top(&stack)?.clone());
                }
                0x94 => {
                    let i = memo.len() as u32;
                    memo.insert(i, top(&stack)?.clone());
                }
                b'h' => {
                    let i = self.byte()?;
                    stack.push(
                        memo.get(&i.into())
                            .cloned()
                            .ok_or_else(|| anyhow!("a pickle refers to memo {i}, never stored"))?,
                    );
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.take()?);
                    stack.push(
                        memo.get(&i).cloned().ok_or_else(|| anyhow!("a pickle refers to memo {i}, never stored"))?,
                    );
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                        _ => bail!("a pickled global whose names are not strings"),
                    }
                }
                b'Q' => {
                    let pid = pop(&mut stack)?;
                    let v = self.persistent_load(pid)?;
                    stack.push(v);
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    stack.push(reduce(callable, args)?);
                }
                0x81 => {
                    pop(&mut stack)?; // NEWOBJ: arguments, then the class
                    pop(&mut stack)?;
                    stack.push(Value::Object);
                }
                // BUILD sets an object's state: an OrderedDict's `_metadata`,
                // which loading weights has no use for.
                b'b' => {
                    pop(&mut stack)?;
                }
                b'0' => {
                    pop(&mut stack)?;
                }
                b'1' => {
                    pop_mark(&mut stack)?;
                }
                b'2' => {
                    let v = top(&stack)?.clone();
                    stack.push(v);
                }
                _ => bail!("pickle opcode 0x{op:02x}, which a PyTorch state dict does not use"),
            }
        }
    }

    /// `('storage', torch.FloatStorage, key, location, numel[, view])`, as
    /// `torch.save` names each tensor's storage.
    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        let Value::Tuple(id) = pid else { bail!("a persistent id that is not a tuple: {pid:?}") };
        match id.as_slice() {
            // Zip archives leave out the legacy format's sixth field, the view.
            [Value::Str(tag), Value::Global(_, ty), Value::Str(key), _location, _numel, view @ ..]
                if tag == "storage" =>
            {
                let kind = storage_kind(ty)?;
                let view = match view.first() {
                    Some(Value::Tuple(v)) => match v.as_slice() {
                        // The view's own key, its offset and size in the root storage.
                        [_, Value::Int(offset), Value::Int(size)] => Some((*offset, *size)),
                        _ => bail!("a storage view this reader does not know: {v:?}"),
                    },
                    _ => None,
                };
                if let Some(&known) = self.storages.get(key) {
                    if known != kind {
                        bail!("storage {key} is both {known:?} and {kind:?}");
                    }
                }
                self.storages.insert(key.clone(), kind);
                Ok(Value::Storage(StorageRef { key: key.clone(), view }))
            }
            [Value::Str(tag), ..] if tag == "module" => Ok(Value::Object),
            _ => bail!("a persistent id this reader does not know: {id:?}"),
        }
    }
}

fn long(bytes: Vec<u8>) -> Value {
    if bytes.len() <= 8 {
        let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
        let mut b = [fill; 8];
        b[..bytes.len()].copy_from_slice(&bytes);
        Value::Int(i64::from_le_bytes(b))
    } else {
        Value::Big(bytes)
    }
}

fn pop(stack: &mut Vec<Value>) -> Result<Value> {
    match stack.pop() {
        Some(Value::Mark) | None => bail!("a pickle pops more than it pushed"),
        Some(v) => Ok(v),
    }
}

fn top(stack: &[Value]) -> Result<&Value> {
    stack.last().ok_or_else(|| anyhow!("a pickle stores an empty stack"))
}

fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>> {
    let at = stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or_else(|| anyhow!("a pickle has no mark"))?;
    let items = stack.split_off(at + 1);
    stack.pop();
    Ok(items)
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("a pickled dict with a key and no value");
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn append(stack: &mut [Value], items: Vec<Value>) -> Result<()> {
    match stack.last_mut() {
        Some(Value::List(l)) => l.extend(items),
        // Appending to an opaque object (a set, a custom class): dropped.
        Some(Value::Object) => {}
        _ => bail!("a pickle appends to something that is not a list"),
    }
    Ok(())
}

fn dict_of(stack: &mut [Value]) -> Result<&mut Vec<(Value, Value)>> {
    match stack.last_mut() {
        Some(Value::Dict(d)) => Ok(d),
        _ => bail!("a pickle sets an item of something that is not a dict"),
    }
}

/// What calling `callable(*args)` would have made, for the callables a
/// state dict uses; anything else is an opaque object.
fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &callable else { return Ok(Value::Object) };
    let Value::Tuple(args) = args else { return Ok(Value::Object) };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => match args.into_iter().next() {
            Some(Value::List(items)) => {
                let mut d = Vec::new();
                for item in items {
                    match item {
                        Value::Tuple(kv) if kv.len() == 2 => {
                            let mut kv = kv.into_iter();
                            if let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                                d.push((k, v));
                            }
                        }
                        _ => bail!("an OrderedDict item that is not a pair"),
                    }
                }
                Ok(Value::Dict(d))
            }
            _ => Ok(Value::Dict(Vec::new())),
        },
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => match args.as_slice() {
            [Value::Storage(s), Value::Int(offset), size, stride, ..] => Ok(Value::Tensor(TensorRef {
                storage: s.clone(),
                offset: *offset,
                size: ints(size)?,
                stride: ints(stride)?,
            })),
            _ => bail!("{module}.{name} with arguments this reader does not know"),
        },
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            args.into_iter().next().ok_or_else(|| anyhow!("{module}.{name} without a tensor"))
        }
        _ => Ok(Value::Object),
    }
}

fn ints(v: &Value) -> Result<Vec<i64>> {
    let Value::Tuple(items) = v else { bail!("a tensor shape that is not a tuple: {v:?}") };
    items.iter().map(|i| if let Value::Int(i) = i { Ok(*i) } else { bail!("a tensor shape of {i:?}") }).collect()
}

fn storage_kind(ty: &str) -> Result<Kind> {
    Ok(match ty {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => bail!("tensors of {ty}, which this reader does not read"),
    })
}
