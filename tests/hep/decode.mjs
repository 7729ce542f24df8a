// Decodes HEP3 packets with hep-js, the Homer project's own library, as a
// collector would: one packet a line on stdin, as hex (tshark's
// `-T fields -e udp.payload`, from a capture of what the gateway sent);
// one JSON line out for each: {ok, rcinfo, payload} or {ok: false, error}.
import HEPjs from 'hep-js';
import { createInterface } from 'node:readline';

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const hex = line.trim().replaceAll(':', '');
  if (!hex) continue;
  try {
    const buf = Buffer.from(hex, 'hex');
    if (buf.subarray(0, 4).toString() !== 'HEP3') throw new Error('not HEP3');
    const d = HEPjs.decapsulate(buf);
    console.log(JSON.stringify({ ok: true, rcinfo: d.rcinfo, payload: d.payload.toString() }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e) }));
  }
}
