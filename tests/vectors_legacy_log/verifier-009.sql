BEGIN TRANSACTION;
CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL);
INSERT INTO "_migrations" VALUES('001_registry','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('002_scans','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('003_audit_log','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('004_accounts','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('005_reported_codes','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('006_login_throttle','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('007_ratelimit','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('008_pin_attempts','2026-12-01T12:49:49+00:00');
INSERT INTO "_migrations" VALUES('009_sequencer','2026-12-01T12:49:49+00:00');
CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            token_hash TEXT NOT NULL UNIQUE,
            label TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
CREATE TABLE audit_checkpoints (
            seq INTEGER NOT NULL,
            head TEXT NOT NULL,
            at TEXT NOT NULL,
            kid TEXT NOT NULL,
            signature TEXT NOT NULL
        );
INSERT INTO "audit_checkpoints" VALUES(8,'9a3f77db50ae5a24169f379289943729077c873b2427c00f3031149194092b88','2026-12-01T12:49:54.227+00:00','9f26','6215cf7f0059d17e1bfc0fa8f4350c4770720d8209176ee28964ed94e4f91fa3576750ec5596805aa8d6efc157a4d5bd586425b153755b2c298871b4d3f4a90d');
CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            body TEXT NOT NULL,
            personal_hash TEXT NOT NULL DEFAULT '',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
INSERT INTO "audit_log" VALUES(1,'2026-12-01T12:49:49.887+00:00','batch.issued','root','{"count":4,"created_by":"root","enterprise":"旧版茶业","expiry_date":null,"form":"compact","gtin":null,"id":1,"kid":"bcb7","lot":null,"mark":"anti-counterfeit","product":"绿茶","spec":""}','','0000000000000000000000000000000000000000000000000000000000000000','d9260d102da0674ba4794cca66802df097fcda7b176ba6e985df50357c2a8301');
INSERT INTO "audit_log" VALUES(2,'2026-12-01T12:49:50.844+00:00','batch.issued','root','{"count":4,"created_by":"root","enterprise":"旧版茶业","expiry_date":null,"form":"compact","gtin":null,"id":2,"kid":"bcb7","lot":null,"mark":"anti-counterfeit","product":"绿茶","spec":""}','','d9260d102da0674ba4794cca66802df097fcda7b176ba6e985df50357c2a8301','db812393dd9a312f890ad832e959a890270dd780fd18dc2ca0285785a4155db5');
INSERT INTO "audit_log" VALUES(3,'2026-12-01T12:49:51.523+00:00','batch.recalled','cli:root','{"batch":2,"reason":"legacy recall"}','','db812393dd9a312f890ad832e959a890270dd780fd18dc2ca0285785a4155db5','d25d7879e175f2967d3b4b3d5f652e58620b16278987471b250c3b4f2ab15b6b');
INSERT INTO "audit_log" VALUES(4,'2026-12-01T12:49:52.244+00:00','user.added','cli:root','{"enterprise_id":null,"role":"admin","user":"ada"}','','d25d7879e175f2967d3b4b3d5f652e58620b16278987471b250c3b4f2ab15b6b','21cfc95ebb5e6f576b4749dc3755eddc54d83e7c260d3acf35616cf3a3836c20');
INSERT INTO "audit_log" VALUES(5,'2026-12-01T12:49:53.164+00:00','scan','','{"at":"2026-12-01T12:49:53.164+00:00","batch_id":null,"channel":"qr","checks":null,"counted":0,"country":null,"detail":"bad-encoding","id":1,"kid":null,"pin":null,"reason":"malformed","serial":null}','612ba565f61b0095814554b745fcf687e5e37e960f5056b8b72bf1ed3ee6b645','21cfc95ebb5e6f576b4749dc3755eddc54d83e7c260d3acf35616cf3a3836c20','c8181700d8c409741aa205919917a2ac98f56ddaa009517ff5025997c18062a4');
INSERT INTO "audit_log" VALUES(6,'2026-12-01T12:49:53.444+00:00','scan','','{"at":"2026-12-01T12:49:53.444+00:00","batch_id":null,"channel":"qr","checks":null,"counted":0,"country":null,"detail":"bad-encoding","id":2,"kid":null,"pin":null,"reason":"malformed","serial":null}','b3bb967b65b5f8b799237e8fe4c318d88ecdd057c509c66e17fe72372c7969ed','c8181700d8c409741aa205919917a2ac98f56ddaa009517ff5025997c18062a4','e7dfc0335e4a30f9ce9845d699ef535854f97acc109f0d578d790e0b2870d401');
INSERT INTO "audit_log" VALUES(7,'2026-12-01T12:49:53.449+00:00','scan','','{"at":"2026-12-01T12:49:53.449+00:00","batch_id":null,"channel":"qr","checks":null,"counted":0,"country":null,"detail":"bad-encoding","id":3,"kid":null,"pin":null,"reason":"malformed","serial":null}','c29f685235543301f45e12abcda1dec9efffa01beb3b137eddd50cb13e401600','e7dfc0335e4a30f9ce9845d699ef535854f97acc109f0d578d790e0b2870d401','e7435830c7fac6941d03d11e24a8de6cdfa6ba09eec00ad94661231d2ba82f66');
INSERT INTO "audit_log" VALUES(8,'2026-12-01T12:49:53.457+00:00','scan','','{"at":"2026-12-01T12:49:53.457+00:00","batch_id":null,"channel":"qr","checks":null,"counted":0,"country":null,"detail":"bad-encoding","id":4,"kid":null,"pin":null,"reason":"malformed","serial":null}','a94a95890e8cc0d36c1d9563e5a1a8f0d196e2f1e382d3393ffc62034de1aa01','e7435830c7fac6941d03d11e24a8de6cdfa6ba09eec00ad94661231d2ba82f66','9a3f77db50ae5a24169f379289943729077c873b2427c00f3031149194092b88');
CREATE TABLE batches (
            id INTEGER PRIMARY KEY,           -- the batch number signed into compact codes
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            product_id INTEGER NOT NULL REFERENCES products(id),
            mark TEXT NOT NULL,
            form TEXT NOT NULL,
            lot TEXT,
            gtin TEXT,
            production_date TEXT,
            expiry_date TEXT,
            count INTEGER NOT NULL,
            kid TEXT NOT NULL,
            base_url TEXT NOT NULL,
            pin INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            output_dir TEXT,
            issuing_pid INTEGER,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            recalled_at TEXT,
            recall_reason TEXT
        );
INSERT INTO "batches" VALUES(1,1,1,'anti-counterfeit','compact',NULL,NULL,NULL,NULL,4,'bcb7','HTTPS://VERIFY.EXAMPLE.CN/',0,'active','/tmp/legacy-log-wiyh39zf/b1',NULL,'2026-12-01T12:49:49+00:00','root','',NULL,NULL);
INSERT INTO "batches" VALUES(2,1,1,'anti-counterfeit','compact',NULL,NULL,NULL,NULL,4,'bcb7','HTTPS://VERIFY.EXAMPLE.CN/',0,'recalled','/tmp/legacy-log-wiyh39zf/b2',NULL,'2026-12-01T12:49:50+00:00','root','','2026-12-01T12:49:51+00:00','legacy recall');
CREATE TABLE code_checks (
            serial INTEGER PRIMARY KEY,
            checks INTEGER NOT NULL,
            first_checked_at TEXT NOT NULL,
            last_checked_at TEXT NOT NULL,
            pin_verified_at TEXT,
            sessions TEXT NOT NULL DEFAULT ''
        );
CREATE TABLE codes (
            serial INTEGER PRIMARY KEY,
            batch_id INTEGER NOT NULL REFERENCES batches(id)
        );
INSERT INTO "codes" VALUES(115522377816553,1);
INSERT INTO "codes" VALUES(3328543665732233,2);
INSERT INTO "codes" VALUES(3978442369726008,1);
INSERT INTO "codes" VALUES(4290040249513304,2);
INSERT INTO "codes" VALUES(4952504518642740,2);
INSERT INTO "codes" VALUES(5041783817368106,1);
INSERT INTO "codes" VALUES(6250581906183594,2);
INSERT INTO "codes" VALUES(6850436594476054,1);
CREATE TABLE enterprises (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            credit_code TEXT UNIQUE,          -- unified social credit code (统一社会信用代码)
            created_at TEXT NOT NULL
        );
INSERT INTO "enterprises" VALUES(1,'旧版茶业',NULL,'2026-12-01T12:49:49+00:00');
CREATE TABLE login_failures (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            client_hash TEXT NOT NULL,      -- keyed hash of the IPv4 address or IPv6 /64, never the address
            account_hash TEXT               -- keyed hash of the user name tried, known or not; NULL: refused unchecked
        );
CREATE TABLE pin_attempts (
            serial INTEGER PRIMARY KEY,
            window_start TEXT NOT NULL,       -- UTC: the first wrong PIN of the current window
            failures INTEGER NOT NULL         -- wrong PINs since window_start
        );
CREATE TABLE products (
            id INTEGER PRIMARY KEY,
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            name TEXT NOT NULL,
            spec TEXT NOT NULL DEFAULT '',
            gtin TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (enterprise_id, name, spec)
        );
INSERT INTO "products" VALUES(1,1,'绿茶','',NULL,'2026-12-01T12:49:49+00:00');
CREATE TABLE reported_codes (
            serial INTEGER PRIMARY KEY,
            reported_at TEXT NOT NULL,
            reported_by TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );
CREATE TABLE scans (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,                 -- UTC, ISO 8601 with milliseconds
            channel TEXT NOT NULL,            -- qr | manual | api
            reason TEXT NOT NULL,             -- the verdict's stable reason code
            detail TEXT,
            serial INTEGER,
            batch_id INTEGER,
            kid TEXT,
            counted INTEGER NOT NULL DEFAULT 0,  -- 1 if this scan added to the code's check count
            checks INTEGER,                   -- the code's check count after this scan
            pin TEXT,                         -- first | reused | mismatch, when a PIN was typed
            ip_prefix TEXT,
            ip_hash TEXT,
            country TEXT,
            region TEXT,
            city TEXT,
            user_agent TEXT,
            session_hash TEXT
        , log_seq INTEGER, personal_salt TEXT);
INSERT INTO "scans" VALUES(1,'2026-12-01T12:49:53.164+00:00','qr','malformed','bad-encoding',NULL,NULL,NULL,0,NULL,NULL,'127.0.0.0/24','a705a192818f4e71',NULL,NULL,NULL,'other/other','c5e6771c3fa0c9a1',5,'b6f2e95d9b237aa94020833b10195989');
INSERT INTO "scans" VALUES(2,'2026-12-01T12:49:53.444+00:00','qr','malformed','bad-encoding',NULL,NULL,NULL,0,NULL,NULL,'127.0.0.0/24','a705a192818f4e71',NULL,NULL,NULL,'other/other','c5e6771c3fa0c9a1',6,'dc219dc1b3acf8ce6da9d3425523b5e3');
INSERT INTO "scans" VALUES(3,'2026-12-01T12:49:53.449+00:00','qr','malformed','bad-encoding',NULL,NULL,NULL,0,NULL,NULL,'127.0.0.0/24','a705a192818f4e71',NULL,NULL,NULL,'other/other','c5e6771c3fa0c9a1',7,'e2d62e833983edb4d0b13570f5ba2024');
INSERT INTO "scans" VALUES(4,'2026-12-01T12:49:53.457+00:00','qr','malformed','bad-encoding',NULL,NULL,NULL,0,NULL,NULL,'127.0.0.0/24','a705a192818f4e71',NULL,NULL,NULL,'other/other','c5e6771c3fa0c9a1',8,'53513f18a426bb7f2ff550677aadfb28');
CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'inspector', 'enterprise')),
            enterprise_id INTEGER REFERENCES enterprises(id),
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until TEXT,
            created_at TEXT NOT NULL
        );
INSERT INTO "users" VALUES(1,'ada','admin',NULL,'scrypt:32768:8:1$EhTufYXnIVJ1IcvpvJeVwq$e2b12f977da7835ad36f7fbdd901cca32308f23a1119d5d7ef3cd3a7f8170f31c9ad5440c2b4d008c46f762c7fda31f45ef62089b8cc0db1eb2b23cb7e8dda81',0,0,NULL,'2026-12-01T12:49:52.244+00:00');
CREATE TABLE web_sessions (
            id_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL
        ) WITHOUT ROWID;
CREATE INDEX batches_enterprise ON batches(enterprise_id);
CREATE INDEX scans_at ON scans(at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER scans_no_delete BEFORE DELETE ON scans
            BEGIN SELECT RAISE(ABORT, 'scans are append-only'); END;
CREATE TRIGGER scans_only_purge BEFORE UPDATE ON scans
            WHEN NEW.id IS NOT OLD.id
               OR NEW.at IS NOT OLD.at
               OR NEW.channel IS NOT OLD.channel
               OR NEW.reason IS NOT OLD.reason
               OR NEW.detail IS NOT OLD.detail
               OR NEW.serial IS NOT OLD.serial
               OR NEW.batch_id IS NOT OLD.batch_id
               OR NEW.kid IS NOT OLD.kid
               OR NEW.counted IS NOT OLD.counted
               OR NEW.checks IS NOT OLD.checks
               OR NEW.pin IS NOT OLD.pin
               OR NEW.country IS NOT OLD.country
               OR NEW.log_seq IS NOT OLD.log_seq
               OR (NEW.ip_prefix IS NOT NULL AND NEW.ip_prefix IS NOT OLD.ip_prefix)
               OR (NEW.ip_hash IS NOT NULL AND NEW.ip_hash IS NOT OLD.ip_hash)
               OR (NEW.region IS NOT NULL AND NEW.region IS NOT OLD.region)
               OR (NEW.city IS NOT NULL AND NEW.city IS NOT OLD.city)
               OR (NEW.user_agent IS NOT NULL AND NEW.user_agent IS NOT OLD.user_agent)
               OR (NEW.session_hash IS NOT NULL AND NEW.session_hash IS NOT OLD.session_hash)
               OR (NEW.personal_salt IS NOT NULL AND NEW.personal_salt IS NOT OLD.personal_salt)
            BEGIN SELECT RAISE(ABORT, 'scans can only have personal fields erased'); END;
CREATE INDEX scans_batch ON scans(batch_id, id) WHERE batch_id IS NOT NULL;
CREATE INDEX scans_serial ON scans(serial, id) WHERE serial IS NOT NULL;
CREATE INDEX scans_reason ON scans(reason, id) WHERE reason NOT IN ('genuine', 'genuine-repeat');
CREATE INDEX login_failures_client ON login_failures(client_hash, at);
CREATE INDEX login_failures_account ON login_failures(account_hash, at) WHERE account_hash IS NOT NULL;
CREATE INDEX login_failures_at ON login_failures(at);
COMMIT;
