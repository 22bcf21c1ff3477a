// Command controlplane is a real Kubernetes control plane in one binary:
// kube-apiserver from k8s.io/kubernetes plus an embedded etcd server, for
// tests and local development. It runs no controllers, scheduler or kubelet.
//
//	controlplane certs --dir DIR
//	    write ca, serving, admin client and service-account keys/certs to DIR
//	controlplane etcd --data-dir DIR --client-url URL --peer-url URL
//	    run only the embedded etcd
//	controlplane kube-apiserver [kube-apiserver flags]
//	    run only kube-apiserver
//	controlplane serve --data-dir DIR --client-url URL --peer-url URL [--exit-with-parent] -- [kube-apiserver flags]
//	    run etcd, then kube-apiserver against it (--etcd-servers is added)
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	if len(os.Args) < 2 {
		must(fmt.Errorf("usage: %s certs|etcd|kube-apiserver|serve [flags]", os.Args[0]))
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "certs":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		dir := fs.String("dir", ".", "directory to write the PEM files to")
		_ = fs.Parse(args)
		must(writeCerts(*dir))
	case "kube-apiserver":
		os.Exit(apiserver(args))
	case "etcd", "serve":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		dir := fs.String("data-dir", "etcd", "etcd data directory")
		client := fs.String("client-url", "http://127.0.0.1:2379", "etcd client URL")
		peer := fs.String("peer-url", "http://127.0.0.1:2380", "etcd peer URL")
		noFsync := fs.Bool("unsafe-no-fsync", true, "skip fsync (fast, not crash-safe)")
		orphan := fs.Bool("exit-with-parent", false, "shut down when the parent process exits")
		_ = fs.Parse(args)
		if *orphan {
			go exitWithParent(os.Getppid())
		}
		etcd, err := startEtcd(*dir, *client, *peer, *noFsync)
		must(err)
		if cmd == "etcd" {
			must(<-etcd.Err())
		}
		code := apiserver(append([]string{"--etcd-servers=" + *client}, fs.Args()...))
		etcd.Close()
		os.Exit(code)
	default:
		must(fmt.Errorf("unknown command %q", cmd))
	}
}

// must exits with status 1 on a non-nil error.
func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

// exitWithParent sends this process SIGTERM (graceful shutdown) once it is
// orphaned, and exits outright if that has not finished within 15 seconds.
func exitWithParent(ppid int) {
	for os.Getppid() == ppid {
		time.Sleep(500 * time.Millisecond)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	time.Sleep(15 * time.Second)
	os.Exit(1)
}

func apiserver(args []string) int {
	command := app.NewAPIServerCommand()
	command.SetArgs(args)
	return cli.Run(command)
}

func startEtcd(dir, client, peer string, noFsync bool) (*embed.Etcd, error) {
	cu, err := url.Parse(client)
	if err != nil {
		return nil, err
	}
	pu, err := url.Parse(peer)
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.UnsafeNoFsync = noFsync
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after 60s")
	}
}

// writeCerts writes ca.{crt,key}, serving.{crt,key} (127.0.0.1, localhost),
// admin.{crt,key} (CN=admin, O=system:masters) and sa.{key,pub}.
func writeCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, caCert, err := issue(dir, "ca", &x509.Certificate{
		Subject:               pkix.Name{CommonName: "infrakit-controlplane-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	if err != nil {
		return err
	}
	leaf := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	if _, _, err := issue(dir, "serving", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    leaf,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}, caCert, caKey); err != nil {
		return err
	}
	if _, _, err := issue(dir, "admin", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		KeyUsage:    leaf,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, caKey); err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, "sa.key"), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub)
}

// issue creates a key and a certificate from tmpl signed by parent (self-signed when nil).
func issue(dir, name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	return key, cert, writeKey(filepath.Join(dir, name+".key"), key)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
