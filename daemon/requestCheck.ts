// A client's text frame → a typed request, or the error its sender gets: every check the protocol
// makes before a handler sees anything (JSON, nesting depth, envelope, method, params). Pure: no
// connection state, and the result is plain JSON, so daemon/connection.ts runs it in a helper
// process for large frames. Validating the params of a large request on the event loop took 40-90 ms
// the first times (4096 hidden sizes and 4096 plan layers, 441 kB: V8 had not yet compiled the
// schemas' code for them), long enough to delay every other client's answers.
import { describeZodError, ErrorCode, isMethodName, LIMITS, methods, RpcRequestSchema, type MethodName, type RpcError } from '../protocol/daemon';

/** Frames at least this large are checked off the event loop: the largest requests clients send in normal use (a model's inventory or plan) are a few kB. */
export const OFF_LOOP_BYTES = 64 * 1024;

export type RequestId = string | number | null;
export type CheckedRequest = { ok: true; id: RequestId; method: MethodName; params: unknown } | { ok: false; id: RequestId; error: RpcError };

/** The id of a request that failed validation, when it has a usable one (so the client can match the error). */
function requestIdOf(message: unknown): RequestId {
  const raw = (message as { id?: unknown } | null)?.id;
  return (typeof raw === 'string' && raw.length <= 128) || (typeof raw === 'number' && Number.isInteger(raw)) ? raw : null;
}

/** True when `value` nests arrays and objects deeper than `max` (checked without recursion). */
function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= max) return true;
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}

export function checkRequest(text: string): CheckedRequest {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch (err) {
    return { ok: false, id: null, error: { code: ErrorCode.PARSE_ERROR, message: `not valid JSON: ${(err as Error).message}` } };
  }
  if (Array.isArray(message)) {
    return { ok: false, id: null, error: { code: ErrorCode.INVALID_REQUEST, message: 'batch requests are not supported; send one request per frame' } };
  }
  if (nestsDeeperThan(message, LIMITS.maxJsonDepth)) {
    return { ok: false, id: requestIdOf(message), error: { code: ErrorCode.INVALID_REQUEST, message: `the message nests arrays and objects more than ${LIMITS.maxJsonDepth} levels deep; a request is a few levels deep` } };
  }
  const parsed = RpcRequestSchema.safeParse(message);
  if (!parsed.success) return { ok: false, id: requestIdOf(message), error: { code: ErrorCode.INVALID_REQUEST, message: describeZodError(parsed.error, 'request') } };
  const { id, method, params } = parsed.data;
  if (!isMethodName(method)) return { ok: false, id, error: { code: ErrorCode.METHOD_NOT_FOUND, message: `unknown method '${method}'; see docs/protocol.md` } };
  const checked = methods[method].params.safeParse(params);
  if (!checked.success) return { ok: false, id, error: { code: ErrorCode.INVALID_PARAMS, message: describeZodError(checked.error, `params for ${method}`) } };
  return { ok: true, id, method, params: checked.data };
}
