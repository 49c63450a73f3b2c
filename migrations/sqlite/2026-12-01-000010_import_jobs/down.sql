DROP INDEX training_sessions_date;
DROP INDEX cooperatives_registration;
DROP TABLE import_jobs;
