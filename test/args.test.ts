/** The command-line value parsers dhub, dquery and dworker share (proto/src/args.ts). */
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { countArg, int32Arg, leaseArg, MAX_HUB_ENDPOINTS, parseDuration, parseEndpoint, parseHubEndpoints, uint32Arg } from '../proto/src/args.js';

describe('parseDuration', () => {
  it.each([
    ['90', 90_000],
    ['1.5', 1_500],
    ['90s', 90_000],
    ['500ms', 500],
    ['10m', 600_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
  ])('reads a single unit: %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('reads a JSON number as seconds', () => {
    expect(parseDuration(1.5)).toBe(1500);
  });

  it.each([
    ['1d2h', 93_600_000],
    ['3h50m', 13_800_000],
    ['1m30s', 90_000],
    ['2s500ms', 2_500],
    ['1h 30m', 5_400_000],
    ['1d2h3m4s5ms', 93_784_005],
  ])('reads a compound duration: %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    ['01:30:00', 5_400_000],
    ['3:50:00', 13_800_000],
    ['0:00:05', 5_000],
    ['100:00:00', 360_000_000],
    ['1-02:00:00', 93_600_000],
  ])('reads [D-]H:MM:SS: %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['ten', '', '10x', 'h', '1m1h', '1h1h', '10:00', '1:60:00', '1:00:60', '1:2:3', '-5', '1e3s'])('refuses "%s"', (text) => {
    expect(() => parseDuration(text)).toThrow(/is not a duration/);
  });

  it.each(['0', '0s', '0:00:00', '0.4ms'])('refuses a duration that is not positive: "%s"', (text) => {
    expect(() => parseDuration(text)).toThrow(/must be positive/);
  });

  it('refuses a duration too long to count in milliseconds', () => {
    expect(() => parseDuration(`${'9'.repeat(400)}d`)).toThrow(/too long/);
  });
});

/** The message commander would show, or 'accepted: N'. */
function parsed(parse: (value: string) => number, value: string): string {
  try {
    return `accepted: ${parse(value)}`;
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return (err as Error).message;
  }
}

describe('integer option parsers', () => {
  it('int32Arg takes the whole int32 range and refuses what would wrap', () => {
    expect(parsed(int32Arg, '-2147483648')).toBe('accepted: -2147483648');
    expect(parsed(int32Arg, '2147483647')).toBe('accepted: 2147483647');
    expect(parsed(int32Arg, '2147483648')).toBe('2147483648 is out of range: expected an integer from -2147483648 to 2147483647');
    expect(parsed(int32Arg, '-2147483649')).toMatch(/out of range/);
  });

  it('uint32Arg takes 0 to 2^32-1 and refuses negatives and what would wrap', () => {
    expect(parsed(uint32Arg, '0')).toBe('accepted: 0');
    expect(parsed(uint32Arg, '4294967295')).toBe('accepted: 4294967295');
    expect(parsed(uint32Arg, '4294967296')).toMatch(/out of range: expected an integer from 0 to 4294967295/);
    expect(parsed(uint32Arg, '-1')).toMatch(/out of range/);
  });

  it('countArg takes 1 to 2^32-1: attempts 4294967297 is refused, not sent as 1', () => {
    expect(parsed(countArg, '1')).toBe('accepted: 1');
    expect(parsed(countArg, '0')).toMatch(/out of range: expected an integer from 1 to 4294967295/);
    expect(parsed(countArg, '4294967297')).toMatch(/out of range/);
  });

  it.each(['1e3', '0x10', '', ' ', '1.5', '12abc', '99999999999999999999'])('refuses "%s", which is not a plain decimal integer', (text) => {
    expect(parsed(int32Arg, text)).toMatch(/^expected an integer|out of range/);
    expect(parsed(countArg, text)).toMatch(/^expected an integer|out of range/);
  });

  it('leaseArg takes durations up to the uint32 milliseconds the wire carries: 1200h is refused, not sent as 7 h', () => {
    expect(parsed(leaseArg, '1d2h')).toBe('accepted: 93600000');
    expect(parsed(leaseArg, '1193h')).toBe('accepted: 4294800000');
    expect(parsed(leaseArg, '1200h')).toBe('1200h is 4320000000 ms, over the longest lease the wire carries (4294967295 ms, about 49 days)');
  });
});

describe('endpoints', () => {
  it('takes tcp, ipc and inproc endpoints as they are', () => {
    expect(parseEndpoint('tcp://127.0.0.1:6125')).toBe('tcp://127.0.0.1:6125');
    expect(parseEndpoint('tcp://hub-node.example.org:6125')).toBe('tcp://hub-node.example.org:6125');
    expect(parseEndpoint('tcp://[::1]:6125')).toBe('tcp://[::1]:6125');
    expect(parseEndpoint('ipc:///tmp/hub')).toBe('ipc:///tmp/hub');
    expect(parseEndpoint('tcp://0.0.0.0:*', true)).toBe('tcp://0.0.0.0:*');
  });

  it('refuses a host and port without tcp://, with the endpoint to write instead', () => {
    expect(() => parseEndpoint('127.0.0.1:6125')).toThrow('"127.0.0.1:6125" is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. tcp://127.0.0.1:6125');
    expect(() => parseEndpoint('localhost')).toThrow('e.g. tcp://localhost:6125');
    expect(() => parseEndpoint('tcp://localhost')).toThrow('e.g. tcp://localhost:6125');
  });

  it('refuses a port out of range, and * where a client connects', () => {
    expect(() => parseEndpoint('tcp://h:70000')).toThrow('the port must be a number from 1 to 65535');
    expect(() => parseEndpoint('tcp://h:*')).toThrow('the port must be a number from 1 to 65535');
  });

  it("takes a hub's endpoints separated by commas, each checked, the bad one named by its place", () => {
    expect(parseHubEndpoints('tcp://127.0.0.1:6125')).toEqual(['tcp://127.0.0.1:6125']);
    expect(parseHubEndpoints('tcp://a:6125, tcp://[::1]:6126,ipc:///tmp/hub')).toEqual(['tcp://a:6125', 'tcp://[::1]:6126', 'ipc:///tmp/hub']);
    // One endpoint: the message is parseEndpoint's, as it always was.
    expect(() => parseHubEndpoints('localhost')).toThrow(/^"localhost" is not a ZeroMQ endpoint/);
    expect(() => parseHubEndpoints('tcp://a:6125,localhost')).toThrow('endpoint 2 of 2: "localhost" is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. tcp://localhost:6125');
    expect(() => parseHubEndpoints('tcp://a:6125,tcp://b:*')).toThrow('endpoint 2 of 2: "tcp://b:*": the port must be a number from 1 to 65535');
    expect(() => parseHubEndpoints('tcp://a:6125,')).toThrow('endpoint 2 of 2: empty in "tcp://a:6125,"');
    expect(() => parseHubEndpoints('tcp://a:6125,tcp://a:6125')).toThrow('endpoint 2 of 2: "tcp://a:6125" is listed twice');
    const many = Array.from({ length: MAX_HUB_ENDPOINTS + 1 }, (_, i) => `tcp://h:${6000 + i}`).join(',');
    expect(() => parseHubEndpoints(many)).toThrow(`lists ${MAX_HUB_ENDPOINTS + 1} endpoints: at most ${MAX_HUB_ENDPOINTS}`);
  });
});
