# The PE runtime image: a static pe binary on an empty base.
#
#   docker build -f build/pe.Dockerfile -t sluice-pe:dev .
#
# The builder stage fetches modules only through the Go module proxy
# (GOPROXY, default proxy.golang.org or whatever the build passes in).
FROM golang:1.26 AS build
ARG GOPROXY
ENV CGO_ENABLED=0 GOOS=linux GOFLAGS=-trimpath
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -ldflags="-s -w" -o /out/pe ./cmd/pe

FROM scratch
COPY --from=build /out/pe /pe
# Not root; the PE needs no privileges (its ports are above 1024).
USER 65532:65532
# 9090: /healthz /readyz /metrics /summary; 10000+i: PE input port i.
EXPOSE 9090 10000
ENTRYPOINT ["/pe"]
CMD ["run", "--config", "/etc/sluice/pe/pe.json", "--ports", "/etc/sluice/job/ports.json"]
