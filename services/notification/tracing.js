// Tracing of the NotificationService with OpenTelemetry, configured as OpenTelemetry is everywhere:
// off unless OTEL_TRACES_EXPORTER (otlp, console; none is off) or an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) asks for it. The SDK reads the rest:
// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_EXPORTER_OTLP_PROTOCOL
// (grpc, the default here, or http/protobuf), headers and timeouts.
//
// Each task runs in a CONSUMER span whose parent is the control plane's span of the attempt, named by
// the task's `traceparent` (a field of the Task message): the service's spans join the process's trace.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapGetter, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ConsoleSpanExporter } from '@opentelemetry/sdk-trace-base';

const propagator = new W3CTraceContextPropagator();

/** Whether the OTEL_* variables of `env` ask for traces. */
export function tracingWanted(env) {
  if ((env.OTEL_SDK_DISABLED || '').trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER || '').trim().toLowerCase();
  if (exporters) return exporters !== 'none';
  return Boolean((env.OTEL_EXPORTER_OTLP_ENDPOINT || '').trim() || (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || '').trim());
}

async function exporters(env) {
  const names = (env.OTEL_TRACES_EXPORTER || 'otlp').toLowerCase().split(',').map((n) => n.trim()).filter(Boolean);
  const made = [];
  for (const name of names) {
    if (name === 'otlp') {
      const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || 'grpc').trim();
      if (protocol === 'grpc') {
        const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-grpc');
        made.push(new OTLPTraceExporter());
      } else if (protocol === 'http/protobuf') {
        const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
        made.push(new OTLPTraceExporter());
      } else {
        throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL expects grpc or http/protobuf, got ${JSON.stringify(protocol)}`);
      }
    } else if (name === 'console') {
      made.push(new ConsoleSpanExporter());
    } else if (name !== 'none') {
      throw new Error(`OTEL_TRACES_EXPORTER expects otlp, console or none, got ${JSON.stringify(name)}`);
    }
  }
  return made;
}

/**
 * Install a tracer provider when the OTEL_* variables ask for one; resolves to { tracer, shutdown }
 * (tracer null when tracing is off; shutdown exports what is buffered).
 */
export async function configureTracing(env, defaultServiceName) {
  if (!tracingWanted(env)) return { tracer: null, shutdown: async () => {} };
  const named = (env.OTEL_SERVICE_NAME || '').trim() || (env.OTEL_RESOURCE_ATTRIBUTES || '').includes('service.name=');
  let resource = detectResources({ detectors: [envDetector] });
  if (!named) resource = resourceFromAttributes({ 'service.name': defaultServiceName }).merge(resource);
  const spanProcessors = (await exporters(env)).map((exporter) => new BatchSpanProcessor(exporter));
  const provider = new BasicTracerProvider({ resource, spanProcessors });
  trace.setGlobalTracerProvider(provider);
  return { tracer: provider.getTracer('hms-notification-service'), shutdown: () => provider.shutdown() };
}

/** `handler` run in a span that continues the task's trace (or as is, when tracing is off or the task has none). */
export function traced(tracer, service, handler) {
  if (!tracer) return handler;
  return async (task) => {
    if (!task.traceparent) return handler(task);
    const carrier = { traceparent: task.traceparent, ...(task.tracestate ? { tracestate: task.tracestate } : {}) };
    const parent = propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
    const span = tracer.startSpan(
      `${service} ${task.taskType}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'mgmt.worker.service': service,
          'mgmt.process_id': task.processId,
          'mgmt.step_id': task.stepId,
          'mgmt.attempt': task.attempt,
          'mgmt.compensation': task.compensation,
        },
      },
      parent,
    );
    try {
      const output = await handler(task);
      span.end();
      return output;
    } catch (err) {
      span.recordException(err);
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(err?.message ?? err) });
      span.end();
      throw err;
    }
  };
}
