"""The Prometheus metrics the service keeps (served by app/api/ops.py at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter("captioner_webhooks_total", "Webhooks received, by outcome", ["outcome"])
JOB_OUTCOMES = Counter(
    "captioner_job_outcomes_total", "Jobs finished by this process, by outcome", ["outcome"]
)
# Read at scrape time from counters the database keeps (captioner.job_counts): exact, current,
# and as cheap with a million jobs as with ten.
JOBS = Gauge(
    "captioner_jobs", "Jobs in the queue, by state (kept counters, read at scrape)", ["state"]
)
QUEUE_DEPTH = Gauge(
    "captioner_queue_depth", "Jobs waiting (pending) in the queue (kept counters, read at scrape)"
)
OLDEST_PENDING = Gauge(
    "captioner_oldest_pending_seconds",
    "How long the oldest due pending job has waited since it became due (index head, at scrape)",
)
CAPTION_SECONDS = Histogram(
    "captioner_caption_seconds",
    "Time the captioner took per image",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LOCAL_BATCH_SIZE = Histogram(
    "captioner_local_batch_size",
    "Images per batch of the local model (one generate call each)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
CAPTION_ERRORS = Counter("captioner_caption_errors_total", "Captioner errors, by kind", ["kind"])
SCHEMA_MISSES = Counter(
    "captioner_schema_misses_total",
    "Model answers that did not fit the description schema, by how (each is retried once)",
    ["kind"],
)
SCHEMA_FALLBACKS = Counter(
    "captioner_schema_fallbacks_total",
    "Descriptions after two misses (or one and no time left): the fields that fitted, or the "
    "plain sentence",
    ["outcome"],
)
BYTES_DOWNLOADED = Counter("captioner_downloaded_bytes_total", "Image bytes read from storage")
BYTES_SENT = Counter("captioner_sent_bytes_total", "Image bytes sent to the captioner")
PAUSED = Gauge(
    "captioner_worker_paused",
    "1 while the worker is paused for this failure class (see /readyz for the reason)",
    ["failure"],
)
PAUSES = Counter(
    "captioner_worker_pauses_total", "Times the worker paused, by failure class", ["failure"]
)
PROBES = Counter(
    "captioner_probes_total",
    "Probes of the captioner (a small real picture), by result: ok or the failure class",
    ["result"],
)
