-- The MLflow and Prefect databases next to the project store's (POSTGRES_DB), created on the first start.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
