//! Built-in scenarios.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dist::Dist;
use super::grouping::ProducerGroups;
use super::pipeline::ChildTasks;
use super::scenario::{
    Arrival, Cancellation, FollowUp, MixEntry, Producer, Scenario, TaskType, WorkerGroup,
};
use crate::QueueConfig;

/// A preset's name and what it models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresetInfo {
    /// Name for `Simulation::from_preset` and `--preset`.
    pub name: String,
    /// One sentence about the workload.
    pub description: String,
}

/// Every preset.
#[must_use]
pub fn presets() -> Vec<PresetInfo> {
    let info = |name: &str, description: &str| PresetInfo {
        name: name.into(),
        description: description.into(),
    };
    vec![
        info(
            "video-processing",
            "Video uploads: premium transcodes at priority 9, regular at 5, thumbnails at 7 and CDN \
             uploads as follow-ups; 5 workers, two of them flaky spot instances that crash; \
             retries after 10/60/300 s, then the DLQ.",
        ),
        info(
            "steady",
            "A small steady load: one task type, constant arrivals, two reliable workers.",
        ),
        info(
            "nightly-reports",
            "Six hours of a reporting service: users request exports and cancel one in ten \
             within a minute; a cron schedule publishes a 15-minute report at 02:00 UTC and \
             another schedule a cleanup every 10 minutes; 3 workers.",
        ),
        info(
            "noisy-neighbour",
            "One uploader floods a transcode queue: half of 1.2 uploads/s come from one user \
             (the group `heavy`), the rest from 200 light users; 4 workers take about 1/s. \
             Compare with `--sweep fair_groups=0,1`: fair groups keep the light users' waits \
             short while the heavy uploader's backlog grows.",
        ),
        info(
            "video-pipeline",
            "Flows: each upload is a flow of three GPU transcodes (renditions, in parallel), \
             then a package, then a notification, each stage on its own queue with its own \
             workers (12 GPUs, 1 packager, 1 notifier); reports the end-to-end latency of \
             whole pipelines. Sweep `workers.gpu` against the flow p99.",
        ),
    ]
}

/// The named preset's scenario.
pub fn preset(name: &str) -> Result<Scenario, String> {
    match name {
        "video-processing" => Ok(video_processing()),
        "steady" => Ok(steady()),
        "nightly-reports" => Ok(nightly_reports()),
        "noisy-neighbour" => Ok(noisy_neighbour()),
        "video-pipeline" => Ok(video_pipeline()),
        _ => Err(format!(
            "unknown preset {name:?}; known presets: {}",
            presets()
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn normal(mean_ms: u64, std_ms: u64) -> Dist {
    Dist::Normal { mean_ms, std_ms }
}

fn follow(task_type: &str, priority: Option<u8>) -> FollowUp {
    FollowUp {
        task_type: task_type.into(),
        priority,
        probability: 1.0,
    }
}

fn mix(task_type: &str, priority: u8, weight: u32) -> MixEntry {
    MixEntry {
        task_type: task_type.into(),
        priority: Some(priority),
        weight,
    }
}

/// DESIGN.md's reference workload. The CDN upload is a separate task type, published (with the
/// transcode's priority) when a transcode completes, together with a priority-7 thumbnail.
/// Load is about 85% of the five workers' capacity, with a burst of regular uploads every 15
/// minutes, so queues build up and priorities matter.
fn video_processing() -> Scenario {
    let task_types = vec![
        TaskType {
            name: "transcode".into(),
            service: normal(5_000, 1_000),
            failure_probability: 0.03,
            poison_probability: 0.01,
            payload_bytes: 512,
            follow_ups: vec![follow("thumbnail", Some(7)), follow("cdn_upload", None)],
            ..TaskType::default()
        },
        TaskType {
            name: "thumbnail".into(),
            service: normal(2_000, 300),
            failure_probability: 0.01,
            payload_bytes: 256,
            ..TaskType::default()
        },
        TaskType {
            name: "cdn_upload".into(),
            service: normal(3_000, 500),
            failure_probability: 0.02,
            payload_bytes: 256,
            ..TaskType::default()
        },
    ];
    let producers = vec![
        Producer {
            name: "uploads".into(),
            arrival: Arrival::Poisson { rate_per_sec: 0.35 },
            mix: vec![mix("transcode", 9, 1), mix("transcode", 5, 4)],
            ..Producer::default()
        },
        Producer {
            name: "campaign".into(),
            arrival: Arrival::Bursts {
                every_ms: 900_000,
                size: 60,
            },
            mix: vec![mix("transcode", 5, 1)],
            start_ms: 300_000,
            ..Producer::default()
        },
    ];
    let worker = |name: &str, count, failure, crash| WorkerGroup {
        name: name.into(),
        count,
        wait_ms: 30_000,
        lease_ms: Some(300_000),
        failure_probability: failure,
        crash_probability: crash,
        restart_ms: 60_000,
        status_ttl_ms: Some(3_600_000),
        notify_topic: Some("notifications.user.video".into()),
        ..WorkerGroup::default()
    };
    Scenario {
        name: "video-processing".into(),
        duration_ms: 3_600_000,
        seed: 42,
        sample_interval_ms: 60_000,
        queue: "video-processing".into(),
        queue_config: QueueConfig {
            max_retries: 3,
            ack_deadline_ms: 300_000,
            retry_delays_ms: vec![10_000, 60_000, 300_000],
            prefetch: 1,
            ..QueueConfig::default()
        },
        task_types,
        producers,
        workers: vec![
            worker("encoder", 3, 0.0, 0.0),
            worker("spot-encoder", 2, 0.05, 0.02),
        ],
        ..Scenario::default()
    }
}

fn steady() -> Scenario {
    Scenario {
        name: "steady".into(),
        duration_ms: 600_000,
        seed: 7,
        sample_interval_ms: 10_000,
        queue: "jobs".into(),
        task_types: vec![TaskType {
            name: "job".into(),
            service: Dist::Uniform {
                min_ms: 200,
                max_ms: 600,
            },
            ..TaskType::default()
        }],
        producers: vec![Producer {
            name: "api".into(),
            arrival: Arrival::Constant { rate_per_sec: 3.0 },
            mix: vec![mix("job", 5, 1)],
            ..Producer::default()
        }],
        workers: vec![WorkerGroup {
            name: "worker".into(),
            count: 2,
            service: BTreeMap::new(),
            ..WorkerGroup::default()
        }],
        ..Scenario::default()
    }
}

/// Schedules and cancellations. Time 0 is midnight UTC, so the cron report runs at 2 h; while
/// it holds one of the three workers for about 15 minutes, exports queue up and more of the
/// cancellations find their export still waiting. Exports are cancelled 1 s to 1 min after
/// they are published: some still ready, some in flight (the worker's ack then settles them as
/// cancelled), most already done.
fn nightly_reports() -> Scenario {
    let task_types = vec![
        TaskType {
            name: "export".into(),
            service: normal(20_000, 5_000),
            failure_probability: 0.02,
            payload_bytes: 512,
            cancel: Some(Cancellation {
                fraction: 0.1,
                after: Dist::Uniform {
                    min_ms: 1_000,
                    max_ms: 60_000,
                },
            }),
            ..TaskType::default()
        },
        TaskType {
            name: "nightly_report".into(),
            service: normal(900_000, 60_000),
            payload_bytes: 256,
            ..TaskType::default()
        },
        TaskType {
            name: "cleanup".into(),
            service: Dist::Constant { ms: 2_000 },
            payload_bytes: 128,
            ..TaskType::default()
        },
    ];
    let schedule = |name: &str, every_ms, cron: Option<&str>, task_type, priority| Producer {
        name: name.into(),
        arrival: Arrival::Schedule {
            every_ms,
            cron: cron.map(Into::into),
        },
        mix: vec![mix(task_type, priority, 1)],
        ..Producer::default()
    };
    Scenario {
        name: "nightly-reports".into(),
        duration_ms: 6 * 3_600_000,
        seed: 3,
        sample_interval_ms: 300_000,
        queue: "reports".into(),
        queue_config: QueueConfig {
            max_retries: 2,
            ack_deadline_ms: 1_800_000,
            retry_delays_ms: vec![30_000],
            ..QueueConfig::default()
        },
        task_types,
        producers: vec![
            Producer {
                name: "users".into(),
                arrival: Arrival::Poisson { rate_per_sec: 0.1 },
                mix: vec![mix("export", 5, 1)],
                ..Producer::default()
            },
            schedule("nightly", None, Some("0 2 * * *"), "nightly_report", 3),
            schedule("cleanup", Some(600_000), None, "cleanup", 1),
        ],
        workers: vec![WorkerGroup {
            name: "worker".into(),
            count: 3,
            ..WorkerGroup::default()
        }],
        ..Scenario::default()
    }
}

/// Flow control's reference picture (controlling-throughput.md). One producer's uploads come
/// half from one heavy uploader and half from 200 light users: 1.2 tasks/s against four
/// workers that finish about 1/s (4 s ± 1 s each), so the queue is flooded. First come, first
/// served, everyone waits behind the heavy uploader's backlog, minutes by the end of the hour;
/// with `fair_groups` the groups take turns, so a light user's upload waits seconds and the
/// backlog stays the heavy uploader's own.
fn noisy_neighbour() -> Scenario {
    Scenario {
        name: "noisy-neighbour".into(),
        duration_ms: 3_600_000,
        seed: 11,
        sample_interval_ms: 60_000,
        queue: "transcode".into(),
        queue_config: QueueConfig {
            ack_deadline_ms: 60_000,
            ..QueueConfig::default()
        },
        task_types: vec![TaskType {
            name: "transcode".into(),
            service: normal(4_000, 1_000),
            payload_bytes: 512,
            ..TaskType::default()
        }],
        producers: vec![Producer {
            name: "uploads".into(),
            arrival: Arrival::Poisson { rate_per_sec: 1.2 },
            mix: vec![mix("transcode", 5, 1)],
            groups: ProducerGroups {
                count: 200,
                heavy_share: 0.5,
            },
            ..Producer::default()
        }],
        workers: vec![WorkerGroup {
            name: "gpu".into(),
            count: 4,
            ..WorkerGroup::default()
        }],
        ..Scenario::default()
    }
}

/// Flows (DESIGN.md §14): an upload is a flow whose root, `notify`, waits for a `package`,
/// which waits for three `transcode` renditions. Each task type has its own queue and worker
/// group. The GPUs carry the load (0.2 uploads/s × 3 renditions × 15 s ≈ 9 busy GPUs of 12);
/// the packager is busy about 60% of the time. A transcode fails 2% of its attempts (retried)
/// and one upload in about 300 is corrupt: that rendition fails every attempt, and under
/// `on_child_failure: fail` its package and notification are dead-lettered (`child_failed`),
/// so the flow fails.
fn video_pipeline() -> Scenario {
    let stage = |name: &str, service, children: Vec<ChildTasks>| TaskType {
        name: name.into(),
        queue: Some(name.into()),
        service,
        children,
        ..TaskType::default()
    };
    let child = |task_type: &str, count| ChildTasks {
        task_type: task_type.into(),
        count,
        priority: None,
    };
    let workers = |name: &str, count, queue: &str| WorkerGroup {
        name: name.into(),
        count,
        queue: Some(queue.into()),
        ..WorkerGroup::default()
    };
    Scenario {
        name: "video-pipeline".into(),
        duration_ms: 3_600_000,
        seed: 21,
        sample_interval_ms: 60_000,
        queue: "transcode".into(),
        queue_config: QueueConfig {
            max_retries: 2,
            ack_deadline_ms: 120_000,
            retry_delays_ms: vec![5_000, 30_000],
            ..QueueConfig::default()
        },
        task_types: vec![
            stage(
                "notify",
                Dist::Constant { ms: 300 },
                vec![child("package", 1)],
            ),
            TaskType {
                failure_probability: 0.01,
                ..stage("package", normal(3_000, 500), vec![child("transcode", 3)])
            },
            TaskType {
                failure_probability: 0.02,
                poison_probability: 0.001,
                payload_bytes: 512,
                ..stage("transcode", normal(15_000, 4_000), Vec::new())
            },
        ],
        producers: vec![Producer {
            name: "uploads".into(),
            arrival: Arrival::Poisson { rate_per_sec: 0.2 },
            mix: vec![mix("notify", 5, 1)],
            ..Producer::default()
        }],
        workers: vec![
            workers("gpu", 12, "transcode"),
            workers("packager", 1, "package"),
            workers("notifier", 1, "notify"),
        ],
        ..Scenario::default()
    }
}
