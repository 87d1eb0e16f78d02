//! The run: data-parallel steps over MPI ranks, evaluations, checkpoints,
//! signals and resume.
//!
//! Every step is a function of (parameters, momentum, step): the batch is
//! `offset(step)` in the tutorial's fixed order, each rank takes its shard of it,
//! and dropout masks come from (seed, step, example), never from a generator's
//! running state. So 2 ranks step like 1 (up to float summation order), and a
//! run stopped by a signal and resumed from its checkpoint ends where an
//! uninterrupted one does.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::data::{self, DataInfo, DataSource};
use super::model::{self, Cnn, DROPOUT, HIDDEN};
use super::output::{self, EvalRecord, MnistRun, Outputs, Reporter, RunConfig};
use super::schedule::{Schedule, MOMENTUM, WEIGHT_DECAY};
use super::{MnistConfig, EVAL_BATCH_SIZE};
use crate::cli::usage;
use crate::cluster::Cluster;
use crate::device;
use crate::train::{rng, Checkpoint, DataParallel, Optimizer, Params, Precision, Sgd, StopSignal};

const STATE_FORMAT: u32 = 1;

/// What a checkpoint holds besides tensors: where to go on, and what the run
/// was, so a resume with other data or another batch is refused.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    pub format: u32,
    pub workload: String,
    pub next_step: u64,
    pub seed: u64,
    pub batch_size: usize,
    pub data_kind: String,
    pub data_sizes: [usize; 3],
    pub history: Vec<EvalRecord>,
}

impl TrainerState {
    fn check_matches(&self, want: &TrainerState, path: &Path) -> Result<()> {
        let describe = |s: &TrainerState| {
            let data = match s.data_kind.as_str() {
                "sample" => "the offline sample (--sample)",
                "self-test" => "self-test data (--self-test)",
                _ => "MNIST",
            };
            format!(
                "--seed {} --batch-size {} on {data}, {}/{}/{} train/validation/test",
                s.seed, s.batch_size, s.data_sizes[0], s.data_sizes[1], s.data_sizes[2]
            )
        };
        if self.workload != want.workload || self.format != want.format {
            return Err(usage(format!("{} is not an mnist-cnn checkpoint; use another --output", path.display())));
        }
        if (self.seed, self.batch_size, &self.data_kind, self.data_sizes)
            != (want.seed, want.batch_size, &want.data_kind, want.data_sizes)
        {
            return Err(usage(format!(
                "{} was made with {}, this run asks for {}: resume with the flags it was started with, or use another --output",
                path.display(),
                describe(self),
                describe(want)
            )));
        }
        Ok(())
    }
}

/// Runs training on every rank; rank 0 gets the run's record, others `None`.
pub fn run(cluster: &Cluster, cfg: &MnistConfig) -> Result<Option<MnistRun>> {
    // First, so a signal during the (possibly long) data loading is not lost.
    let stop = StopSignal::install()?;
    let dev = cluster.agree(device::resolve(cfg.device, cluster.local_rank()))?;
    // Setting up CUDA replaces signal handlers; ours go back.
    stop.reassert();
    let threads = device::apply_threads(cfg.threads, cluster.default_threads());
    device::host_memory::keep_freed_memory();
    if cfg.batch_size < cluster.size() {
        let e = usage(format!(
            "--batch-size {} is smaller than the {} ranks: every rank needs at least one example of each batch",
            cfg.batch_size,
            cluster.size()
        ));
        return cluster.agree(Err(e));
    }
    let splits = data::load_everywhere(cluster, &cfg.source)?;
    let epochs = if cfg.source == DataSource::SelfTest { 1.0 } else { cfg.epochs };
    let schedule = cluster.agree(Schedule::new(splits.train.len(), cfg.batch_size, epochs, cfg.eval_frequency))?;
    let outputs = Outputs::in_dir(&cfg.output);
    let mut reporter = Reporter::new(cluster.is_root(), schedule.steps);
    for line in output::data_lines(&splits.info) {
        reporter.say(line);
    }

    let vs = nn::VarStore::new(dev.tch());
    let model = Cnn::new(&vs.root(), cfg.seed)?;
    let params = Params::trainable(&vs);
    let mut opt = Sgd::new(&params, MOMENTUM)?.with_weight_decay(&params, WEIGHT_DECAY, model::is_regularized);
    let mut dp = DataParallel::new(cluster);

    let fresh = TrainerState {
        format: STATE_FORMAT,
        workload: "mnist-cnn".into(),
        next_step: 0,
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        data_kind: splits.info.kind.clone(),
        data_sizes: [splits.train.len(), splits.validation.len(), splits.test.len()],
        history: Vec::new(),
    };
    let local =
        if cluster.is_root() { start_state(cfg, &outputs, &fresh, &params, &mut opt).map(Some) } else { Ok(None) };
    let (state, note) = cluster.agree(local)?.unwrap_or_else(|| (fresh.clone(), String::new()));
    let state: TrainerState = cluster.broadcast_value(&state)?;
    if !note.is_empty() {
        reporter.say(note);
    }
    dp.broadcast(&params)?;
    if state.next_step > 0 {
        // The momentum buffers too: views of the optimizer's own tensors.
        let (names, tensors) = opt.state(&params).into_iter().unzip();
        dp.broadcast(&Params { names, tensors })?;
    }

    let config = RunConfig {
        epochs,
        batch_size: cfg.batch_size,
        eval_frequency: schedule.eval_every,
        seed: cfg.seed,
        precision: cfg.precision.to_string(),
        data: splits.info.kind.clone(),
        data_path: splits.info.path.clone(),
        device: dev.to_string(),
        threads_per_rank: threads,
        ranks: cluster.size(),
        output: outputs.dir.display().to_string(),
        resume: cfg.resume,
        command: cfg.command.clone(),
    };
    // Written first: an --output that cannot be written is found now, on every
    // rank, before any training is lost.
    let written = if cluster.is_root() {
        crate::report::write_json(&outputs.config, &config)
            .map_err(|e| usage(format!("--output {}: {}", outputs.dir.display(), crate::cli::one_line(&e))))
    } else {
        Ok(())
    };
    cluster.agree(written)?;
    let engine = if dev.is_cuda() { None } else { cfg.precision.cpu_engine() };
    reporter.say(output::setup_line(&config, schedule.steps, engine));
    reporter.say("Initialized!");

    let sets = Sets::new(&splits, dev.tch())?;
    let trainer = Trainer { model: &model, params: &params, cfg, schedule: &schedule, sets: &sets };
    let outcome = trainer.train(&mut dp, &mut opt, &stop, state, &outputs, &mut reporter)?;
    reporter.finish();

    let test_error = match outcome.stopped_by {
        Some(_) => None,
        None => Some(error_rate(&model, &sets.test, &dp, cfg.precision)?),
    };
    if cfg.source == DataSource::SelfTest {
        let failed = match test_error {
            Some(e) if e != 0.0 => Err(anyhow!("self-test failed: expected 0.0% test error, got {e:.1}%")),
            _ => Ok(()),
        };
        cluster.agree(failed)?;
    }
    if !cluster.is_root() {
        return Ok(None);
    }
    let steps_run = outcome.steps_run.max(1) as f64;
    let train_seconds = outcome.seconds;
    Ok(Some(MnistRun {
        workload: "mnist-cnn".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        config,
        data: DataInfo { notes: Vec::new(), ..splits.info.clone() },
        ranks: cluster.size(),
        nodes: cluster.nodes(),
        threads_per_rank: threads,
        device: dev.to_string(),
        precision: cfg.precision.to_string(),
        bf16_engine: engine.map(str::to_string),
        parameters: params.numel(),
        steps: schedule.steps,
        first_step: outcome.first_step,
        steps_run: outcome.steps_run,
        validation_error: outcome.history.last().map(|r| r.validation_error),
        history: outcome.history,
        test_error,
        stopped_by: outcome.stopped_by,
        train_seconds,
        eval_seconds: outcome.eval_seconds,
        ms_per_step: 1e3 * train_seconds / steps_run,
        ms_per_train_step: 1e3 * (train_seconds - outcome.eval_seconds - outcome.save_seconds) / steps_run,
        cpu_ms_per_step: outcome.cpu_seconds.map(|c| 1e3 * c / steps_run),
        examples_per_second: outcome.steps_run as f64 * cfg.batch_size as f64 / train_seconds.max(1e-9),
        outputs,
    }))
}

/// Rank 0: the state to start from (fresh, or the checkpoint's when resuming,
/// with the model and optimizer restored) and a line saying which.
fn start_state(
    cfg: &MnistConfig,
    outputs: &Outputs,
    fresh: &TrainerState,
    params: &Params,
    opt: &mut Sgd,
) -> Result<(TrainerState, String)> {
    let path = &outputs.checkpoint;
    if !path.exists() {
        let note = if cfg.resume {
            format!("No checkpoint in {}: starting fresh.", outputs.dir.display())
        } else {
            String::new()
        };
        return Ok((fresh.clone(), note));
    }
    if !cfg.resume {
        return Ok((
            fresh.clone(),
            format!(
                "Starting fresh: the checkpoint in {} will be replaced (pass --resume to continue it instead).",
                outputs.dir.display()
            ),
        ));
    }
    let ck = Checkpoint::load(path).map_err(|e| usage(format!("{e:#}; delete it to start fresh")))?;
    let state: TrainerState = serde_json::from_value(ck.state.clone())
        .map_err(|_| usage(format!("{} is not an mnist-cnn checkpoint; use another --output", path.display())))?;
    state.check_matches(fresh, path)?;
    ck.restore(&params.names, &params.tensors).map_err(|e| usage(format!("{}: {e:#}", path.display())))?;
    opt.load_state(params, &ck.tensors).map_err(|e| usage(format!("{}: {e:#}", path.display())))?;
    let note = format!("Resuming from {} at step {}.", path.display(), state.next_step);
    Ok((state, note))
}

/// A split on the device: images `[n, 1, 28, 28]` and labels.
struct Set {
    images: Tensor,
    labels: Tensor,
}

struct Sets {
    train: Set,
    validation: Set,
    test: Set,
}

impl Sets {
    fn new(s: &data::Splits, device: tch::Device) -> Result<Sets> {
        let set = |d: &data::Digits| -> Result<Set> {
            let (images, labels) = d.tensors(device)?;
            Ok(Set { images, labels })
        };
        Ok(Sets { train: set(&s.train)?, validation: set(&s.validation)?, test: set(&s.test)? })
    }
}

struct Outcome {
    history: Vec<EvalRecord>,
    first_step: u64,
    steps_run: u64,
    stopped_by: Option<String>,
    seconds: f64,
    cpu_seconds: Option<f64>,
    eval_seconds: f64,
    save_seconds: f64,
}

struct Trainer<'a> {
    model: &'a Cnn,
    params: &'a Params,
    cfg: &'a MnistConfig,
    schedule: &'a Schedule,
    sets: &'a Sets,
}

impl Trainer<'_> {
    fn train(
        &self,
        dp: &mut DataParallel,
        opt: &mut Sgd,
        stop: &StopSignal,
        mut state: TrainerState,
        outputs: &Outputs,
        reporter: &mut Reporter,
    ) -> Result<Outcome> {
        let (schedule, cfg) = (self.schedule, self.cfg);
        let root = dp.cluster().is_root();
        let first_step = state.next_step.min(schedule.steps);
        let batch = schedule.batch;
        let shard = dp.shard(batch);
        // This rank's share of the batch scales its loss, so the all-reduced
        // gradient is the global batch's mean (no extra pass over the buffer).
        let weight = shard.len() as f64 / batch as f64;
        let (mut eval_seconds, mut save_seconds) = (0.0, 0.0);
        let began = Instant::now();
        let cpu_began = crate::device::process_cpu_seconds();
        let mut since = Instant::now();
        let mut last_logged = first_step as i64 - 1;
        let mut stopped_by = None;
        reporter.steps_done(first_step);
        for step in first_step..schedule.steps {
            let evaluates = schedule.evaluates_at(step);
            let start = (schedule.offset(step) + shard.start) as i64;
            let images = self.sets.train.images.f_narrow(0, start, shard.len() as i64)?;
            let labels = self.sets.train.labels.f_narrow(0, start, shard.len() as i64)?;
            let key = rng::derive(cfg.seed, "dropout", step);
            let mask = Tensor::f_from_slice(&rng::dropout_mask(key, shard.clone(), HIDDEN as usize, DROPOUT))?
                .f_view([shard.len() as i64, HIDDEN])?;
            let logits = self.model.forward(&images, Some(&mask), cfg.precision)?;
            let loss = logits
                .f_cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Mean, -100, 0.0)?
                .f_mul_scalar(weight)?;
            // The tutorial's minibatch figures are of this step's forward pass,
            // with the weights before the update.
            let minibatch = if evaluates {
                let wrong = logits.f_argmax(1, false)?.f_ne_tensor(&labels)?.f_sum(Kind::Int64)?;
                let mut m = [loss.f_double_value(&[])?, wrong.f_int64_value(&[])? as f64];
                dp.sum_metrics(&mut m);
                Some((m[0] + WEIGHT_DECAY * self.model.l2_loss()?, 100.0 * m[1] / batch as f64))
            } else {
                None
            };
            let any_stop =
                dp.step(&loss, self.params, opt, schedule.learning_rate(step), stop.requested().is_some())?;
            state.next_step = step + 1;
            if let Some((minibatch_loss, minibatch_error)) = minibatch {
                dev_sync(&self.sets.train.images);
                let ms_per_step = 1e3 * since.elapsed().as_secs_f64() / (step as i64 - last_logged) as f64;
                since = Instant::now();
                last_logged = step as i64;
                let t = Instant::now();
                let validation_error = error_rate(self.model, &self.sets.validation, dp, cfg.precision)?;
                eval_seconds += t.elapsed().as_secs_f64();
                let record = EvalRecord {
                    step,
                    epoch: schedule.epoch(step),
                    ms_per_step,
                    minibatch_loss,
                    learning_rate: schedule.learning_rate(step),
                    minibatch_error,
                    validation_error,
                };
                reporter.eval(&record);
                state.history.push(record);
                if root {
                    let t = Instant::now();
                    save(outputs, self.params, opt, &state)?;
                    save_seconds += t.elapsed().as_secs_f64();
                }
            }
            reporter.steps_done(step + 1);
            if any_stop {
                if root && !evaluates {
                    save(outputs, self.params, opt, &state)?;
                }
                stopped_by = Some(stop.requested().unwrap_or("a signal to another rank").to_string());
                break;
            }
        }
        dev_sync(&self.sets.train.images);
        Ok(Outcome {
            history: state.history,
            first_step,
            steps_run: state.next_step - first_step,
            stopped_by,
            seconds: began.elapsed().as_secs_f64(),
            cpu_seconds: cpu_began.zip(crate::device::process_cpu_seconds()).map(|(a, b)| b - a),
            eval_seconds,
            save_seconds,
        })
    }
}

/// Waits for queued GPU work, so timings are of work done.
fn dev_sync(t: &Tensor) {
    if let tch::Device::Cuda(i) = t.device() {
        tch::Cuda::synchronize(i as i64);
    }
}

fn save(outputs: &Outputs, params: &Params, opt: &Sgd, state: &TrainerState) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    tensors.extend(opt.state(params));
    Checkpoint::save(&outputs.checkpoint, &tensors, &serde_json::to_value(state)?).context("writing the checkpoint")
}

/// Error rate (%) over a whole split: each rank takes its contiguous share, in
/// evaluation batches of 64 (the tutorial's `eval_in_batches`), without autograd;
/// the counts are summed over ranks.
fn error_rate(model: &Cnn, set: &Set, dp: &DataParallel, precision: Precision) -> Result<f64> {
    let n = set.labels.size()[0] as usize;
    let shard = dp.shard(n);
    let _guard = tch::no_grad_guard();
    let mut wrong = Tensor::f_zeros([], (Kind::Int64, set.labels.device()))?;
    for begin in shard.clone().step_by(EVAL_BATCH_SIZE) {
        let len = EVAL_BATCH_SIZE.min(shard.end - begin) as i64;
        let logits = model.forward(&set.images.f_narrow(0, begin as i64, len)?, None, precision)?;
        let labels = set.labels.f_narrow(0, begin as i64, len)?;
        wrong = wrong.f_add(&logits.f_argmax(1, false)?.f_ne_tensor(&labels)?.f_sum(Kind::Int64)?)?;
    }
    let mut m = [wrong.f_int64_value(&[])? as f64];
    dp.sum_metrics(&mut m);
    Ok(100.0 * m[0] / n.max(1) as f64)
}
