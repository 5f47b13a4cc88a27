# Flink JobManager/TaskManager image: the official Flink image plus PyFlink (for the Python
# UDAFs in udfs/) and the Kafka SQL connector in lib/.
ARG FLINK_VERSION=2.2.1
FROM flink:${FLINK_VERSION}-java17
ARG FLINK_VERSION
ARG FLINK_CONNECTOR_VERSION=5.0.0-2.2
USER root
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/pyflink \
    && /opt/pyflink/bin/pip install --no-cache-dir "apache-flink==${FLINK_VERSION}" \
    && ln -sf /opt/pyflink/bin/python /usr/local/bin/python
RUN wget -q -O /opt/flink/lib/flink-sql-connector-kafka-${FLINK_CONNECTOR_VERSION}.jar \
    "https://repo1.maven.org/maven2/org/apache/flink/flink-sql-connector-kafka/${FLINK_CONNECTOR_VERSION}/flink-sql-connector-kafka-${FLINK_CONNECTOR_VERSION}.jar"
ENV PYTHONPATH=/opt/moex
USER flink
