/**
 * The daemon client (the one the CLI and the extension share) against a misbehaving server on 127.0.0.1: garbage frames, notifications that do not
 * match the protocol and answers to unknown ids are reported (never thrown inside the socket
 * handler, which would take the CLI or the extension host down); a result that fails its schema rejects the
 * request with the field named; a silent server times out; a dropped socket rejects what is pending.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer, type WebSocket } from 'ws';
import { DaemonClient } from '../../client/daemonClient';

let wss: WebSocketServer;
let url: string;

before(async () => {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`;
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data) => {
      const req = JSON.parse(String(data)) as { id: number; method: string };
      if (req.method === 'hello') {
        ws.send('this is not json');
        ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'job.metrics', params: { jobId: 'x', seq: 0, type: 'step' } }));
        ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'job.unknown', params: {} }));
        ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'job.status', params: { jobId: 'j1', seq: 1, type: 'status', state: 'running', t: 1 } }));
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: 999, result: {} }));
        // hello's result is missing most fields: the schema rejects it
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, result: { name: 'pixelfly-daemon', version: '1' } }));
      } else if (req.method === 'job.list') {
        // never answered
      } else if (req.method === 'job.get') {
        ws.terminate();
      }
    });
  });
});
after(() => new Promise<void>((r) => wss.close(() => r())));

describe('DaemonClient with a misbehaving daemon', () => {
  it('reports bad frames, rejects an invalid result naming the field, times out, and fails pending requests on close', async () => {
    const problems: string[] = [];
    let closed = false;
    const c = await DaemonClient.connect(url, 'token');
    const events: unknown[] = [];
    c.onEvent((e) => events.push(e));
    c.onClose(() => (closed = true));
    c.onProtocolError((m) => problems.push(m));
    await assert.rejects(c.request('hello', {}), /daemon hello: invalid hello result: .*(protocol|pid|backends)/);
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems[0], /not JSON/);
    assert.match(problems[1], /job\.metrics/);
    assert.match(problems[2], /unknown notification job\.unknown/);
    assert.match(problems[3], /unknown request id 999/);
    assert.deepEqual(events, [{ jobId: 'j1', seq: 1, type: 'status', state: 'running', t: 1 }], 'the one valid notification reaches the listeners');
    await assert.rejects(c.request('job.list', {}, 200), /no answer within 200 ms/);
    await assert.rejects(c.request('job.get', { jobId: 'j1' }), /connection closed .* before the answer/);
    assert.equal(closed, true);
    await assert.rejects(c.request('job.list', {}), /not connected/);
  });

  it('says why a connection is refused', async () => {
    await assert.rejects(DaemonClient.connect('ws://127.0.0.1:1/', 't'), /ECONNREFUSED/);
  });
});
