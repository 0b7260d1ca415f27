-- usertrail on PostgreSQL: the two roles of a log (issue 33), for psql:
--
--   psql "$ADMIN_URL" -v owner=usertrail_owner -v writer=usertrail_writer \
--        -v schema=usertrail -f store/sql/roles.sql
--
-- Run it as a role that may create roles (once per log: the grants are the
-- schema's). Give each role a password or another way in, as your server's
-- pg_hba.conf asks. Then, as the owner, `PgStore::init` (usertrail's `init`)
-- makes the log's tables in the schema; run this file once more after it,
-- since the grants on the tables need them to exist.
--
-- The owner runs init and migrations and owns the tables. The writer, which
-- every other command uses, may read and append records and never change or
-- remove one; it may replace caches. A trigger refuses UPDATE, DELETE and
-- TRUNCATE of records even to the owner, who would have to drop it first.

SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'writer')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'writer') \gexec

-- The owner makes the schema (init does) in this database.
SELECT format('GRANT CREATE ON DATABASE %I TO %I', current_database(), :'owner') \gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'schema', :'owner') \gexec

-- The writer: reads everything, appends records, replaces caches.
GRANT USAGE ON SCHEMA :"schema" TO :"writer";
SELECT format('GRANT SELECT ON %I.meta TO %I', :'schema', :'writer')
WHERE to_regclass(format('%I.meta', :'schema')) IS NOT NULL \gexec
SELECT format('GRANT SELECT, INSERT ON %I.records TO %I', :'schema', :'writer')
WHERE to_regclass(format('%I.records', :'schema')) IS NOT NULL \gexec
SELECT format('GRANT SELECT, INSERT ON %I.findings TO %I', :'schema', :'writer')
WHERE to_regclass(format('%I.findings', :'schema')) IS NOT NULL \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.caches TO %I', :'schema', :'writer')
WHERE to_regclass(format('%I.caches', :'schema')) IS NOT NULL \gexec
