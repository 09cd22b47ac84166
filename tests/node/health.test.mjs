// grpc-js (the client Node users have) against all three binaries: health
// over plaintext, TLS and mutual TLS, and a rich error from the Debug service.
// Run: node --test tests/node/   (LARDER_BUILD_DIR selects the build)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import {
  KINDS, debugPkg, decodeFields, healthCheck, makeCerts, tmpDir, withServer,
} from './helpers.mjs';

let certs;
let certDir;

before(() => {
  certDir = tmpDir('larder-node-certs-');
  certs = makeCerts(certDir);
});

after(() => {
  fs.rmSync(certDir, { recursive: true, force: true });
});

async function expectRejected(client, what) {
  await assert.rejects(healthCheck(client, '', 10000), (err) => {
    assert.equal(err.code, grpc.status.UNAVAILABLE, `${what}: ${err.code} ${err.details}`);
    return true;
  });
}

for (const kind of KINDS) {
  describe(kind, () => {
    test('plaintext: Health/Check is SERVING', async () => {
      await withServer(kind, {}, async (s) => {
        const c = s.healthClient();
        try {
          assert.equal((await healthCheck(c)).status, 'SERVING');
          await assert.rejects(healthCheck(c, 'no.such.Service'), (err) => {
            assert.equal(err.code, grpc.status.NOT_FOUND);
            return true;
          });
        } finally {
          c.close();
        }
      });
    });

    test('TLS: SERVING with the CA; a plaintext client is refused', async () => {
      await withServer(kind, { certs }, async (s) => {
        const c = s.healthClient();
        try {
          assert.equal((await healthCheck(c)).status, 'SERVING');
        } finally {
          c.close();
        }
        const plain = s.healthClient(grpc.credentials.createInsecure());
        try {
          await expectRejected(plain, 'plaintext client against TLS');
        } finally {
          plain.close();
        }
      });
    });

    test('mTLS: no client cert rejected, untrusted cert rejected, CA-signed cert SERVING', async () => {
      await withServer(kind, { certs, mtls: true }, async (s) => {
        const noCert = s.healthClient(s.credentials({ clientCert: false }));
        try {
          await expectRejected(noCert, 'client without certificate');
        } finally {
          noCert.close();
        }
        const rogue = s.healthClient(grpc.credentials.createSsl(certs.ca, certs.rogueKey, certs.rogueCert));
        try {
          await expectRejected(rogue, 'client with untrusted certificate');
        } finally {
          rogue.close();
        }
        const good = s.healthClient();
        try {
          assert.equal((await healthCheck(good)).status, 'SERVING');
        } finally {
          good.close();
        }
      });
    });
  });
}

test('Debug/Sleep fail_code: grpc-js sees the code, Feast JSON and google.rpc.Status', async () => {
  await withServer('online', { args: ['--debug-service'] }, async (s) => {
    const c = new debugPkg.Debug(s.target, s.credentials());
    try {
      const err = await new Promise((resolve, reject) => {
        c.Sleep({ millis: 1, fail_code: grpc.status.NOT_FOUND }, { deadline: Date.now() + 10000 },
          (e, r) => (e ? resolve(e) : reject(new Error(`expected an error, got ${JSON.stringify(r)}`))));
      });
      assert.equal(err.code, grpc.status.NOT_FOUND);
      const j = JSON.parse(err.details);
      assert.deepEqual(Object.keys(j), ['module', 'class', 'message']);
      assert.equal(j.module, 'feast.errors');
      const bin = err.metadata.get('grpc-status-details-bin');
      assert.equal(bin.length, 1);
      const fields = decodeFields(bin[0]);
      const code = fields.find(([f]) => f === 1);
      const msg = fields.find(([f]) => f === 2);
      const details = fields.filter(([f]) => f === 3);
      assert.equal(Number(code[1]), grpc.status.NOT_FOUND);
      assert.equal(Buffer.from(msg[1]).toString('utf8'), err.details);
      assert.equal(details.length, 1);
      const any = decodeFields(details[0][1]);
      const typeUrl = Buffer.from(any.find(([f]) => f === 1)[1]).toString();
      assert.equal(typeUrl, 'type.googleapis.com/google.rpc.ErrorInfo');
      const info = decodeFields(any.find(([f]) => f === 2)[1]);
      assert.equal(Buffer.from(info.find(([f]) => f === 1)[1]).toString(), j.class);
      assert.equal(Buffer.from(info.find(([f]) => f === 2)[1]).toString(), j.module);
    } finally {
      c.close();
    }
  });
});
