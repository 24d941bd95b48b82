//! Dynamic batching: requests for the same model and members wait together until the batch
//! holds `max_batch` samples or its first request has waited `max_delay`, then run as one
//! prediction on a worker thread and are answered separately.
//!
//! The queue is bounded (a full queue is `503`), requests whose client has gone or whose
//! deadline has passed are dropped before they run and stopped between the chunks of a large
//! batch (`chunks.rs`), and closing lets the workers finish everything queued.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::{ArrayD, Axis, s};
use tokio::sync::oneshot;

use crate::ApiError;
use crate::metrics::Metrics;
use crate::model::{Answer, BatchKey, ServedModel};

/// A request waiting for a worker.
pub struct Job {
    /// The model to run.
    pub model: Arc<ServedModel>,
    /// Requests with the same model and key may share a batch.
    pub key: BatchKey,
    /// How members are chosen.
    pub sampling: modeconn_runtime::Sampling,
    /// The input batch.
    pub input: ArrayD<f32>,
    /// Whether per-member probabilities are needed.
    pub per_member: bool,
    /// Where the answer goes; a closed channel means the client is gone.
    pub reply: oneshot::Sender<Result<Answer, ApiError>>,
    /// When the request times out: its work stops then.
    pub deadline: Instant,
    enqueued: Instant,
}

impl Job {
    /// A job queued now, to be answered by `deadline`.
    pub fn new(
        model: Arc<ServedModel>,
        key: BatchKey,
        sampling: modeconn_runtime::Sampling,
        input: ArrayD<f32>,
        per_member: bool,
        reply: oneshot::Sender<Result<Answer, ApiError>>,
        deadline: Instant,
    ) -> Job {
        Job {
            model,
            key,
            sampling,
            input,
            per_member,
            reply,
            deadline,
            enqueued: Instant::now(),
        }
    }

    /// Whether someone still waits for the answer: the client is there and the deadline has
    /// not passed.
    fn awaited(&self) -> bool {
        !self.reply.is_closed() && Instant::now() < self.deadline
    }

    fn bytes(&self) -> usize {
        self.input.len() * std::mem::size_of::<f32>()
    }

    fn samples(&self) -> usize {
        self.input.shape().first().copied().unwrap_or(0)
    }

    fn joins(&self, other: &Job) -> bool {
        Arc::ptr_eq(&self.model, &other.model) && self.key == other.key
    }
}

/// Batch limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Samples per batch at most (a larger request runs alone).
    pub max_batch: usize,
    /// Longest wait of a batch's first request for others.
    pub max_delay: Duration,
    /// Requests waiting at most.
    pub capacity: usize,
    /// Bytes of input waiting at most (a single larger request is still taken when the queue
    /// is empty).
    pub capacity_bytes: usize,
}

struct State {
    queue: VecDeque<Job>,
    /// Input bytes of the queued jobs.
    bytes: usize,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The queue and its worker threads.
pub struct Batcher {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Batcher {
    /// Starts `workers` threads.
    pub fn start(
        workers: usize,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Batcher> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                closing: false,
            }),
            wake: Condvar::new(),
            limits,
            metrics,
        });
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let shared = Arc::clone(&shared);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("modeconn-worker-{i}"))
                    .spawn(move || work(&shared))?,
            );
        }
        Ok(Batcher {
            shared,
            workers: Mutex::new(handles),
        })
    }

    /// Queues a job, or refuses it with `503` when the queue is full or the server is
    /// stopping.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let mut st = self.shared.lock();
        if st.closing {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        let limits = &self.shared.limits;
        let bytes = job.bytes();
        if st.queue.len() >= limits.capacity
            || (!st.queue.is_empty() && st.bytes + bytes > limits.capacity_bytes)
        {
            return Err(ApiError::overloaded(format!(
                "the queue is full ({} requests, {:.1} MiB waiting); retry later",
                st.queue.len(),
                st.bytes as f64 / f64::from(1 << 20)
            )));
        }
        st.bytes += bytes;
        st.queue.push_back(job);
        self.shared.metrics.queue_depth.set(st.queue.len() as i64);
        drop(st);
        self.shared.wake.notify_all();
        Ok(())
    }

    /// Stops taking jobs, lets the workers finish every queued one, and waits for them.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.close();
    }
}

/// A worker: take the next batch, run it, repeat until closed and empty.
fn work(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.queue.is_empty() {
            if st.closing {
                return;
            }
            st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        match next_batch(&mut st, shared.limits) {
            Ok(batch) => {
                shared.metrics.queue_depth.set(st.queue.len() as i64);
                drop(st);
                // Another worker may start on what is left.
                shared.wake.notify_all();
                run(shared, batch);
                st = shared.lock();
            }
            Err(wait) => {
                st = shared
                    .wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

/// Takes the oldest group of joinable requests that is ready to run: it holds `max_batch`
/// samples, its first request has waited `max_delay`, or the server is closing. A group that
/// is still gathering does not hold back a later one that is full. When none is ready, says how
/// long to wait for the oldest to become so.
fn next_batch(st: &mut State, limits: BatchLimits) -> Result<Vec<Job>, Duration> {
    let now = Instant::now();
    let mut wait = limits.max_delay;
    let mut seen: Vec<usize> = Vec::new();
    let mut chosen = None;
    for (i, job) in st.queue.iter().enumerate() {
        if seen.iter().any(|&f| st.queue[f].joins(job)) {
            continue;
        }
        seen.push(i);
        let deadline = job.enqueued + limits.max_delay;
        let gathered: usize = st
            .queue
            .iter()
            .skip(i)
            .filter(|j| j.joins(job))
            .map(Job::samples)
            .sum();
        if st.closing || gathered >= limits.max_batch || deadline <= now {
            chosen = Some(i);
            break;
        }
        wait = wait.min(deadline - now);
    }
    let Some(first) = chosen else {
        return Err(wait);
    };
    // The first request of the group and every later one that joins it, in order, while they
    // fit.
    let mut batch: Vec<Job> = Vec::new();
    let mut samples = 0;
    let mut i = first;
    while i < st.queue.len() && samples < limits.max_batch {
        let fits = batch.is_empty()
            || (st.queue[i].joins(&batch[0])
                && samples + st.queue[i].samples() <= limits.max_batch);
        if !fits {
            i += 1;
        } else if let Some(job) = st.queue.remove(i) {
            samples += job.samples();
            st.bytes -= job.bytes();
            batch.push(job);
        }
    }
    Ok(batch)
}

/// Runs one batch and answers each of its requests.
fn run(shared: &Shared, batch: Vec<Job>) {
    let metrics = &shared.metrics;
    let started = Instant::now();
    // Requests whose client has gone (disconnected or timed out) are not run.
    let (live, gone): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(Job::awaited);
    abandon(metrics, gone);
    let Some(first) = live.first() else {
        return;
    };
    let model = Arc::clone(&first.model);
    let label = Metrics::model(&model.name);
    for job in &live {
        metrics
            .queue_seconds
            .get_or_create(&label)
            .observe(started.duration_since(job.enqueued).as_secs_f64());
    }
    let per_member = live.iter().any(|j| j.per_member);
    let joined;
    let input = if live.len() == 1 {
        live[0].input.view()
    } else {
        let views: Vec<_> = live.iter().map(|j| j.input.view()).collect();
        match ndarray::concatenate(Axis(0), &views) {
            Ok(a) => {
                joined = a;
                joined.view()
            }
            Err(e) => {
                for job in live {
                    let _ = job
                        .reply
                        .send(Err(ApiError::internal(format!("batching: {e}"))));
                }
                return;
            }
        }
    };
    let total = input.shape()[0];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::chunks::predict(
            &model.ensemble,
            input.view(),
            &live[0].sampling,
            per_member,
            || live.iter().any(Job::awaited),
        )
    }));
    let compute = started.elapsed();
    metrics
        .compute_seconds
        .get_or_create(&label)
        .observe(compute.as_secs_f64());
    metrics
        .batch_samples
        .get_or_create(&label)
        .observe(total as f64);
    metrics
        .batch_requests
        .get_or_create(&label)
        .observe(live.len() as f64);
    let prediction = match result {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => {
            // Nobody waits any more: the rest of the work was dropped between two chunks.
            abandon(metrics, live);
            return;
        }
        Ok(Err(err)) => {
            // A message may name the member that failed: in per-sample modes that is the
            // secret point, so the client gets the status alone.
            let err = if live[0].sampling.is_per_sample() {
                tracing::error!(model = model.name.as_str(), error = %err, "prediction failed");
                ApiError::new(
                    err.status,
                    "the prediction failed (the server's log has why)",
                )
            } else {
                err
            };
            for job in live {
                let _ = job.reply.send(Err(err.clone()));
            }
            return;
        }
        Err(_) => {
            for job in live {
                let _ = job
                    .reply
                    .send(Err(ApiError::internal("the prediction panicked")));
            }
            return;
        }
    };
    let mut offset = 0;
    for job in live {
        let n = job.samples();
        let rows = offset..offset + n;
        let answer = Answer {
            probabilities: prediction
                .probabilities
                .slice(s![rows.clone(), ..])
                .to_owned(),
            entropy: prediction.entropy.slice(s![rows.clone()]).to_owned(),
            disagreement: prediction
                .disagreement
                .as_ref()
                .map(|d| d.slice(s![rows.clone()]).to_owned()),
            per_member: if job.per_member {
                prediction
                    .per_member
                    .as_ref()
                    .map(|a| a.slice(s![.., rows.clone(), ..]).to_owned())
            } else {
                None
            },
            members: if prediction.per_sample {
                prediction.members[rows].to_vec()
            } else {
                prediction.members.clone()
            },
        };
        offset += n;
        let _ = job.reply.send(Ok(answer));
    }
}

/// Drops jobs nobody waits for, counting them.
fn abandon(metrics: &Metrics, jobs: Vec<Job>) {
    for job in jobs {
        metrics
            .abandoned
            .get_or_create(&Metrics::model(&job.model.name))
            .inc();
        let _ = job.reply.send(Err(ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "the deadline passed before the answer was ready",
        )));
    }
}
