DROP TRIGGER jobs_webhook_outbox ON vidjobs.jobs;
DROP FUNCTION vidjobs.jobs_webhook_outbox();
DROP TABLE vidjobs.webhook_attempts;
DROP TABLE vidjobs.webhook_deliveries;
DROP TABLE vidjobs.webhook_secrets;
DROP TABLE vidjobs.webhook_endpoints;
ALTER TABLE vidjobs.jobs DROP COLUMN callback_url;
