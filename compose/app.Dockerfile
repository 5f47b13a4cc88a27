# Python side of the platform: producer, runner (job submitter), gateway. The same image,
# different commands; sql/ and udfs/ come from read-only mounts so edits need no rebuild.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/moex
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY jvm/ jvm/
RUN mvn -q -B -f jvm/pom.xml generate-resources
COPY topics.toml ./
COPY stack/ stack/
COPY runner/ runner/
COPY producer/ producer/
COPY gateway/ gateway/
COPY web/ web/
ENV PYTHONUNBUFFERED=1
