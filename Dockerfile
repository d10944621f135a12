# tollgate: one static binary; every role is a subcommand.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /tollgate ./cmd/tollgate

FROM gcr.io/distroless/static-debian12
COPY --from=build /tollgate /tollgate
COPY examples /examples
ENTRYPOINT ["/tollgate"]
