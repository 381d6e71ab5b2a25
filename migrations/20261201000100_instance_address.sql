-- Where an instance answers, as its runtime said: the whole address (a pod's IP on a cluster,
-- the loopback of the environment's network locally), not only a port that the proxy would
-- put behind 127.0.0.1. `port` stays for display.
ALTER TABLE instances ADD COLUMN address text;
UPDATE instances SET address = '127.0.0.1:' || port WHERE port IS NOT NULL;
