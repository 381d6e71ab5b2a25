-- Reference data: the plans and the first templates of the catalogue.
-- Prices are in cents per unit and month (egress: per GB transferred).

INSERT INTO plans (id, name, tagline, sort_order, monthly_fee_cents, included_usage_cents,
                   cpu_vcpu_month_cents, memory_gb_month_cents, volume_gb_month_cents, egress_gb_cents,
                   max_projects, max_services, max_replicas, max_memory_mb)
VALUES
  ('free',  'Free',  'Try Roundhouse with a small allowance.',        1,    0,  500, 2000, 1000, 25, 15,   2,   3,  1,   512),
  ('hobby', 'Hobby', 'For side projects that stay up.',               2,  500,  500, 2000, 1000, 25, 15,  10,  20,  3,  8192),
  ('pro',   'Pro',   'For teams and production workloads.',           3, 2000, 2000, 2000, 1000, 25, 15, 100, 100, 10, 32768);

INSERT INTO templates (slug, name, summary, description, category, services, variables, cpu_millis, memory_mb, deploy_count, published, featured)
VALUES
  ('postgres', 'PostgreSQL', 'The relational database, with a persistent volume.',
   'A PostgreSQL server with its data on a volume. Other services reach it through ${{Postgres.DATABASE_URL}}.',
   'database',
   '[{"name": "Postgres", "source": "database", "engine": "postgres", "port": 5432, "volume": "/var/lib/postgresql/data"}]',
   '[{"service": "Postgres", "name": "PGUSER", "value": "postgres", "description": "Superuser name"},
     {"service": "Postgres", "name": "PGPASSWORD", "value": "${{secret(32)}}", "description": "Generated password"},
     {"service": "Postgres", "name": "PGDATABASE", "value": "app", "description": "Database created on first start"}]',
   1000, 1024, 0, true, true),
  ('redis', 'Redis', 'In-memory data store for caches and queues.',
   'A Redis server. Other services reach it through ${{Redis.REDIS_URL}}.',
   'database',
   '[{"name": "Redis", "source": "database", "engine": "redis", "port": 6379}]',
   '[{"service": "Redis", "name": "REDIS_PASSWORD", "value": "${{secret(32)}}", "description": "Generated password"}]',
   500, 256, 0, true, true),
  ('static-site', 'Static site', 'Serve a folder of HTML, CSS and JavaScript.',
   'Any directory with an index.html, served by the built-in static file server.',
   'starter',
   '[{"name": "web", "source": "directory", "port": 8080}]',
   '[]',
   250, 128, 0, true, false),
  ('node-express', 'Node.js + Express', 'A minimal Express API with a health check.',
   'An Express server listening on $PORT with a /health route, built with npm ci.',
   'starter',
   '[{"name": "api", "source": "git", "build": "npm ci", "start": "npm start", "port": 3000, "healthcheck": "/health"}]',
   '[{"service": "api", "name": "NODE_ENV", "value": "production", "description": "Node environment"}]',
   500, 512, 0, true, false),
  ('django-postgres', 'Django + PostgreSQL', 'A Django app wired to its own database.',
   'A Python web app with a PostgreSQL database; DATABASE_URL is a reference to the database service.',
   'fullstack',
   '[{"name": "web", "source": "git", "build": "pip install -r requirements.txt", "start": "gunicorn app.wsgi", "port": 8000},
     {"name": "Postgres", "source": "database", "engine": "postgres", "port": 5432}]',
   '[{"service": "web", "name": "DATABASE_URL", "value": "${{Postgres.DATABASE_URL}}", "description": "Reference to the database"},
     {"service": "web", "name": "SECRET_KEY", "value": "${{secret(50)}}", "description": "Django secret key"}]',
   1000, 1024, 0, true, false),
  ('minio', 'MinIO', 'S3-compatible object storage.',
   'Object storage with an S3 API, from the official container image (Kubernetes runtime).',
   'storage',
   '[{"name": "minio", "source": "image", "image": "minio/minio:latest", "start": "server /data", "port": 9000, "volume": "/data"}]',
   '[{"service": "minio", "name": "MINIO_ROOT_PASSWORD", "value": "${{secret(40)}}", "description": "Root password"}]',
   500, 1024, 0, true, false);
