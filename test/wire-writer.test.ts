import { describe, expect, it } from 'vitest';
import protobuf from 'protobufjs';
import { WireWriter } from '../proto/src/wire-writer.js';

const written = (write: (w: WireWriter) => void): Buffer => {
  const w = new WireWriter(Buffer.alloc(4));
  write(w);
  return Buffer.from(w.buf.subarray(0, w.at));
};

describe('wire writer', () => {
  // Around every place the varint's code changes: 7-bit groups, 31 and 32 bits, and 2^53.
  const EDGES = [1, 127, 128, 16_383, 16_384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35 + 5, 1_795_000_000_123, 2 ** 49, Number.MAX_SAFE_INTEGER];

  it('writes varints, uint64 and int64 fields as protobufjs does', () => {
    for (const n of EDGES) {
      expect(written((w) => w.uint(3, n))).toEqual(Buffer.from(protobuf.Writer.create().uint32(24).uint64(n).finish()));
      expect(written((w) => w.int64(300, n))).toEqual(Buffer.from(protobuf.Writer.create().uint32(2400).int64(n).finish()));
      expect(written((w) => w.int64(4, -n))).toEqual(Buffer.from(protobuf.Writer.create().uint32(32).int64(-n).finish()));
    }
    expect(written((w) => w.uint(1, 0))).toHaveLength(0);
  });

  it('refuses a varint no reader could read back: negative, past 2^53, or not a number', () => {
    for (const n of [-1, -(2 ** 31), 2 ** 53 + 2, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => written((w) => w.uint(3, n)), String(n)).toThrow(/cannot write .* as a varint/);
    }
  });

  it('writes nested messages whose length needs one byte or more, and grows its buffer', () => {
    for (const size of [0, 1, 126, 127, 128, 16_383, 16_384, 70_000]) {
      const text = 'x'.repeat(size);
      const expected = protobuf.Writer.create().uint32(90).fork().uint32(10).string(text).ldelim().finish();
      const got = written((w) => {
        const start = w.open(11);
        w.string(1, text, true);
        w.close(start);
      });
      expect(got.equals(Buffer.from(expected)), `a message holding ${size} bytes`).toBe(true);
    }
    expect(written((w) => w.string(2, 'é✓', true))).toEqual(Buffer.from(protobuf.Writer.create().uint32(18).string('é✓').finish()));
  });
});
