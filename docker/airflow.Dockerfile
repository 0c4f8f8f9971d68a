# Airflow 3.3 image with this provider installed in editable mode from /opt/airflow, so the code
# docker-compose mounts at /opt/airflow/plugins is the code Airflow imports (one path, one name).
FROM apache/airflow:3.3.2-python3.11
USER root
COPY --chown=airflow:root pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root emulator /opt/airflow/emulator
USER airflow
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
 && pip install --no-cache-dir "starlette==1.10.0" "uvicorn==0.54.0"
