// A small Arrow Flight client for the tests, on grpc-js and apache-arrow:
// Feast's remote-offline sequence (DoPut with a JSON command, GetFlightInfo,
// DoGet) plus the other FlightService RPCs, and the glue between Arrow IPC
// streams and FlightData messages (split a stream into header/body pairs,
// join FlightData back into a stream).

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';

import { loadProto } from './helpers.mjs';

export const flightPkg = loadProto('arrow/flight/protocol/Flight.proto').arrow.flight.protocol;

const CONT = 0xffffffff;
const pad8 = (n) => (n + 7) & ~7;

// Message.bodyLength (slot 3, a long) from a flatbuffer Message.
export function fbBodyLength(h) {
  const dv = new DataView(h.buffer, h.byteOffset, h.byteLength);
  const table = dv.getUint32(0, true);
  const vt = table - dv.getInt32(table, true);
  const vtSize = dv.getUint16(vt, true);
  const slot = 4 + 2 * 3;
  if (slot + 2 > vtSize) return 0;
  const off = dv.getUint16(vt + slot, true);
  return off ? Number(dv.getBigInt64(table + off, true)) : 0;
}

// An IPC stream -> [{header, body}] (the end-of-stream marker dropped).
export function splitIpc(bytes) {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let i = 0;
  while (i + 8 <= b.length) {
    let len;
    if (b.readUInt32LE(i) === CONT) {
      len = b.readInt32LE(i + 4);
      i += 8;
    } else { // legacy: no continuation marker
      len = b.readInt32LE(i);
      i += 4;
    }
    if (len === 0) break;
    const header = b.subarray(i, i + len);
    i += len;
    const n = fbBodyLength(header);
    const body = b.subarray(i, i + n);
    i += n;
    out.push({ header: Buffer.from(header), body: Buffer.from(body) });
  }
  return out;
}

// [{data_header, data_body}] -> an IPC stream with an end-of-stream marker.
export function joinIpc(messages) {
  const parts = [];
  for (const m of messages) {
    const h = Buffer.from(m.data_header ?? []);
    if (!h.length) continue;
    const prefix = Buffer.alloc(8);
    prefix.writeUInt32LE(CONT, 0);
    prefix.writeInt32LE(pad8(h.length), 4);
    parts.push(prefix, h, Buffer.alloc(pad8(h.length) - h.length));
    const body = Buffer.from(m.data_body ?? []);
    parts.push(body, Buffer.alloc(pad8(body.length) - body.length));
  }
  const eos = Buffer.alloc(8);
  eos.writeUInt32LE(CONT, 0);
  parts.push(eos);
  return Buffer.concat(parts);
}

export function tableToFlightData(table) {
  return splitIpc(A.tableToIPC(table, 'stream'));
}

export const cmdDescriptor = (cmd) => ({
  type: 'CMD',
  cmd: Buffer.from(typeof cmd === 'string' ? cmd : JSON.stringify(cmd)),
  path: [],
});

// Feast's mock table: {key: string} = ["mock_key"].
export const mockTable = () => A.tableFromArrays({ key: A.vectorFromArray(['mock_key'], new A.Utf8()) });

export class FlightClient {
  constructor(target, creds = grpc.credentials.createInsecure()) {
    this.c = new flightPkg.FlightService(target, creds, {
      'grpc.max_receive_message_length': 256 << 20,
      'grpc.max_send_message_length': 256 << 20,
    });
  }

  close() { this.c.close(); }

  opts(ms = 20000) { return { deadline: Date.now() + ms }; }

  unary(method, req) {
    return new Promise((resolve, reject) => {
      this.c[method](req, this.opts(), (err, resp) => (err ? reject(err) : resolve(resp)));
    });
  }

  serverStream(method, req) {
    return new Promise((resolve, reject) => {
      const out = [];
      const s = this.c[method](req, this.opts());
      s.on('data', (m) => out.push(m));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });
  }

  // Bidi: write every message, half-close, collect the replies.
  bidi(method, messages) {
    return new Promise((resolve, reject) => {
      const out = [];
      const s = this.c[method](this.opts());
      let failed = false;
      s.on('data', (m) => out.push(m));
      s.on('error', (e) => { failed = true; reject(e); });
      s.on('end', () => { if (!failed) resolve(out); });
      for (const m of messages) s.write(m);
      s.end();
    });
  }

  // DoPut of raw FlightData messages.
  doPutRaw(messages) { return this.bidi('DoPut', messages); }

  // DoPut of an apache-arrow table under a descriptor (the schema message
  // carries the descriptor, as pyarrow's writer does).
  doPut(descriptor, table) {
    const parts = tableToFlightData(table);
    const msgs = parts.map((p, i) => ({
      ...(i === 0 ? { flight_descriptor: descriptor } : {}),
      data_header: p.header,
      data_body: p.body,
    }));
    return this.doPutRaw(msgs);
  }

  getFlightInfo(descriptor) { return this.unary('GetFlightInfo', descriptor); }

  getSchema(descriptor) { return this.unary('GetSchema', descriptor); }

  async doGetMessages(ticket) { return this.serverStream('DoGet', ticket); }

  async doGet(ticket) {
    const msgs = await this.doGetMessages(ticket);
    return { msgs, table: A.tableFromIPC(joinIpc(msgs)) };
  }

  listFlights() { return this.serverStream('ListFlights', { expression: Buffer.alloc(0) }); }

  listActions() { return this.serverStream('ListActions', {}); }

  doAction(type, body = Buffer.alloc(0)) { return this.serverStream('DoAction', { type, body }); }

  handshake(reqs) { return this.bidi('Handshake', reqs); }

  doExchange(messages) { return this.bidi('DoExchange', messages); }

  // Feast's sequence: DoPut, GetFlightInfo(same descriptor), DoGet(ticket).
  async command(cmd, table = mockTable()) {
    const d = cmdDescriptor(cmd);
    await this.doPut(d, table);
    const info = await this.getFlightInfo(d);
    const ticket = info.endpoint[0].ticket;
    const got = await this.doGet(ticket);
    return { ...got, info, descriptor: d };
  }
}
