"""Workflow metrics: the engine's counts read when Prometheus asks, and the histograms it feeds.

Labels are the definition name, the step kind, the service and the task type: bounded by the
definitions registered, never by the processes running them (no process id, no business key).
Every known definition shows every series from the start, at zero, so that `increase()` sees the
first processes too.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.core.workflow.definition import Definition
from control_plane.core.workflow.workflows import Workflows
from control_plane.models import EventType, ProcessState, TaskAttempt
from control_plane.observability.instruments import HistogramFamily

# Seconds: a no-op task step takes about a millisecond; a step waiting for a person, days.
STEP_BUCKETS: tuple[float, ...] = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    *(300.0, 1800.0, 3600.0, 86400.0),
)
WAIT_BUCKETS: tuple[float, ...] = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    *(60.0, 300.0, 3600.0),
)
_FINAL = [state for state in ProcessState if state.final]
_ENDED = {
    ProcessState.COMPLETED: EventType.PROCESS_COMPLETED,
    ProcessState.FAILED: EventType.PROCESS_FAILED,
    ProcessState.COMPENSATED: EventType.PROCESS_COMPENSATED,
    ProcessState.CANCELLED: EventType.PROCESS_CANCELLED,
}
_TIMEOUTS = ("task", "heartbeat", "wait", "process")


class WorkflowCollector(Collector):
    """Processes by state, transitions, ends, retries, timeouts, compensations, signals, queues, timers."""

    def __init__(self, workflows: Workflows) -> None:
        self._workflows = workflows

    async def refresh(self) -> None:
        """Where replicas share the store, processes by state are counted there (see WorkflowStats)."""
        if self._workflows.stats_from_store:
            await self._workflows.count_processes()

    def collect(self) -> Iterator[Metric]:
        """Every workflow family, by definition (and service and task type for the queues)."""
        workflows = self._workflows
        stats = workflows.stats
        names = sorted({v.name for v in workflows.definitions()} | {name for name, _ in stats.processes})
        processes = GaugeMetricFamily(
            "mgmt_workflow_processes",
            "Processes by definition and state, as stored (kept across restarts).",
            labels=["definition", "state"],
        )
        for name in names:
            for state in ProcessState:
                processes.add_metric([name, state.value], stats.processes.get((name, state), 0))
        yield processes
        events = stats.events
        started = _counter("mgmt_workflow_processes_started", "Processes started.", ["definition"])
        ended = _counter(
            "mgmt_workflow_processes_ended", "Processes that ended, by final state.", ["definition", "state"]
        )
        transitions = _counter(
            "mgmt_workflow_transitions",
            "Committed transitions (each one store transaction: a start, a task report, a timer, a signal).",
            ["definition"],
        )
        retries = _counter(
            "mgmt_workflow_task_retries",
            "Task attempts scheduled after an earlier one failed.",
            ["definition"],
        )
        timeouts = _counter(
            "mgmt_workflow_timeouts",
            "Timeouts: a task attempt's (task), its heartbeat's (heartbeat), a wait_signal step's (wait), "
            "a process's (process).",
            ["definition", "kind"],
        )
        compensations = _counter(
            "mgmt_workflow_compensations", "Compensation tasks started (one per step undone).", ["definition"]
        )
        signals = _counter(
            "mgmt_workflow_signals",
            "Signals and correlated Bus messages received (delivered to a step or buffered).",
            ["definition"],
        )
        for name in names:
            started.add_metric([name], events.get((name, EventType.PROCESS_STARTED), 0))
            for state in _FINAL:
                ended.add_metric([name, state.value], events.get((name, _ENDED[state]), 0))
            transitions.add_metric([name], stats.transitions.get(name, 0))
            retries.add_metric([name], stats.retries.get(name, 0))
            for kind in _TIMEOUTS:
                timeouts.add_metric([name, kind], stats.timeouts.get((name, kind), 0))
            compensations.add_metric([name], events.get((name, EventType.COMPENSATION_STARTED), 0))
            signals.add_metric([name], events.get((name, EventType.SIGNAL_RECEIVED), 0))
        yield from (started, ended, transitions, retries, timeouts, compensations, signals)
        depths = workflows.dispatcher.queue_depths()
        queue = GaugeMetricFamily(
            "mgmt_workflow_task_queue_depth",
            "Task attempts waiting on this replica for a worker, by service and task type.",
            labels=["service", "task_type"],
        )
        for service, task_type in sorted(task_types(workflows.latest_definitions()) | set(depths)):
            queue.add_metric([service, task_type], depths.get((service, task_type), 0))
        yield queue
        yield GaugeMetricFamily(
            "mgmt_workflow_timers_pending",
            "Durable timers (sleeps, retries, wait and process timeouts) armed on this replica.",
            value=workflows.timers_pending,
        )


class WorkflowHistograms:
    """Step durations and task waits for a worker, observed by the engine as they happen."""

    def __init__(self, metrics: CollectorRegistry) -> None:
        self._steps = HistogramFamily(
            "mgmt_workflow_step_duration_seconds",
            "From entering a step to its completion or failure (retries included), by definition and "
            "step kind.",
            ["definition", "kind"],
            STEP_BUCKETS,
        )
        self._waits = HistogramFamily(
            "mgmt_workflow_task_wait_seconds",
            "How long a task attempt waited for a worker with free credit (schedule to start), by "
            "service and task type.",
            ["service", "task_type"],
            WAIT_BUCKETS,
        )
        metrics.register(self._steps)
        metrics.register(self._waits)

    async def prepare(self, workflows: Workflows) -> None:
        """Show every step kind and task type of the known definitions from the start, at zero: a panel
        then shows 0 rather than nothing, and the first observations count in `rate()`."""
        for definition in workflows.latest_definitions():
            for kind in {step.kind.value for step in definition.all_steps()}:
                self._steps.child(definition.name, kind)
        for service, task_type in task_types(workflows.latest_definitions()):
            self._waits.child(service, task_type)

    def step_ended(self, definition: str, kind: str, seconds: float) -> None:
        """A step of `definition` ended."""
        self._steps.child(definition, kind).observe(seconds)

    def task_handed(self, task: TaskAttempt, waited: float) -> None:
        """A task attempt went to a worker after waiting `waited` seconds."""
        self._waits.child(task.service, task.task_type).observe(waited)


def task_types(definitions: list[Definition]) -> set[tuple[str, str]]:
    """(service, task type) of every task and compensate task of `definitions`."""
    found: set[tuple[str, str]] = set()
    for definition in definitions:
        for step in definition.all_steps():
            for spec in (step.task, step.compensate):
                if spec is not None:
                    found.add((spec.service, spec.task_type))
    return found


def _counter(name: str, documentation: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=labels)
