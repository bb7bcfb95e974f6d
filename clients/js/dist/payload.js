// Payloads (process input and output, signal payloads, task input and output, details) travel as
// google.protobuf.Struct, whose numbers are doubles: the generated code turns a Struct into a plain
// object and back, and this module makes sure what goes in is JSON-shaped, so nothing is lost or
// mangled silently on the way.
/**
 * `value` as a JSON object, with JSON.stringify's rules (toJSON is called, so a Date becomes its ISO
 * string; undefined and functions are left out of objects and become null in arrays) and two
 * stricter ones: a bigint becomes a number when it is a safe integer and is refused otherwise, and so
 * is a number that is not finite, since the contract's numbers are doubles that JSON must be able to
 * print. `undefined` or `null` is the empty object.
 */
export function toPayload(value, where = 'payload') {
    if (value === undefined || value === null)
        return {};
    const json = toJson(value, where);
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
        throw new TypeError(`${where} must be a plain object, got ${Array.isArray(json) ? 'an array' : typeof value}`);
    }
    return json;
}
function toJson(value, where) {
    if (value !== null && typeof value === 'object' && typeof value.toJSON === 'function') {
        value = value.toJSON();
    }
    switch (typeof value) {
        case 'string':
        case 'boolean':
            return value;
        case 'number':
            if (!Number.isFinite(value))
                throw new RangeError(`${where} is ${value}: payload numbers must be finite`);
            return value;
        case 'bigint':
            if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
                throw new RangeError(`${where} is ${value}n: payload numbers are doubles, exact up to 2**53 - 1`);
            }
            return Number(value);
        case 'undefined':
        case 'function':
        case 'symbol':
            return undefined;
    }
    if (value === null)
        return null;
    if (Array.isArray(value))
        return value.map((item, i) => toJson(item, `${where}[${i}]`) ?? null);
    if (ArrayBuffer.isView(value))
        throw new TypeError(`${where} is binary: payloads are JSON (encode it, e.g. base64)`);
    const object = {};
    for (const [key, item] of Object.entries(value)) {
        const json = toJson(item, `${where}.${key}`);
        if (json !== undefined)
            object[key] = json;
    }
    return object;
}
/** Milliseconds as a google.protobuf.Duration. */
export function duration(ms) {
    if (!Number.isFinite(ms) || ms < 0)
        throw new RangeError(`a duration must be a number of milliseconds >= 0, got ${ms}`);
    const seconds = Math.floor(ms / 1000);
    return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
/** A google.protobuf.Duration as milliseconds. */
export function milliseconds(value) {
    return value === undefined ? undefined : value.seconds * 1000 + value.nanos / 1e6;
}
