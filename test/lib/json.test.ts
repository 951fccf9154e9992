import { describe, expect, it } from 'vitest';
import { jsonString } from '../../src/lib/json.js';

describe('jsonString', () => {
  it('writes what JSON.stringify writes, escapes included', () => {
    const samples = [
      '',
      'api',
      '/api/items',
      'user-0@bench.invalid',
      'a"b',
      'back\\slash',
      'tab\there',
      'line\nbreak',
      '\u0000\u001f\u007f',
      'ünïcödé ✓ 😀',
      'lone \ud800 high',
      'lone \udfff low',
      '\ud83d\ude00',
      '</script>',
    ];
    for (const sample of samples) expect(jsonString(sample)).toBe(JSON.stringify(sample));
  });

  it('round-trips through JSON.parse', () => {
    for (let code = 0; code < 0x10000; code += 7) {
      const text = `x${String.fromCharCode(code)}y`;
      expect(JSON.parse(jsonString(text))).toBe(text);
      expect(jsonString(text)).toBe(JSON.stringify(text));
    }
  });
});
