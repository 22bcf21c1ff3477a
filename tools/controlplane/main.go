// Command controlplane is a real Kubernetes control plane in one binary:
// kube-apiserver from k8s.io/kubernetes plus an embedded etcd server, for
// tests and local development, and the parts of a node (kubelet, controller
// manager, scheduler) for the tests that run pods: one multi-call binary, so
// that the Go build cache is shared by all of them.
//
//	controlplane certs --dir DIR
//	    write ca, serving, admin client and service-account keys/certs to DIR
//	controlplane etcd --data-dir DIR --client-url URL --peer-url URL
//	    run only the embedded etcd
//	controlplane kube-apiserver [kube-apiserver flags]
//	    run only kube-apiserver
//	controlplane issue --ca-dir DIR --dir DIR --name NAME --cn CN [--org ORG] [--ip IP]...
//	    write NAME.{crt,key}, a client and serving certificate signed by DIR/ca.*
//	controlplane relay --listen ADDR --to ADDR [--exit-with-parent]
//	    copy TCP connections from one address to another (a node's way to the apiserver)
//	controlplane kubelet|kube-controller-manager|kube-scheduler [flags]
//	    run that component of k8s.io/kubernetes
//	controlplane serve --data-dir DIR --client-url URL --peer-url URL [--exit-with-parent] -- [kube-apiserver flags]
//	    run etcd, then kube-apiserver against it (--etcd-servers is added)
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		must(fmt.Errorf("usage: %s certs|issue|relay|etcd|kube-apiserver|serve|kubelet|kube-controller-manager|kube-scheduler [flags]", os.Args[0]))
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "certs":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		dir := fs.String("dir", ".", "directory to write the PEM files to")
		_ = fs.Parse(args)
		must(writeCerts(*dir))
	case "issue":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		caDir := fs.String("ca-dir", ".", "directory holding ca.crt and ca.key")
		dir := fs.String("dir", ".", "directory to write NAME.crt and NAME.key to")
		name := fs.String("name", "", "file name stem")
		cn := fs.String("cn", "", "subject common name")
		org := fs.String("org", "", "subject organization (e.g. system:nodes)")
		var ips ipList
		fs.Var(&ips, "ip", "IP address for the serving certificate (repeatable)")
		_ = fs.Parse(args)
		must(issueSigned(*caDir, *dir, *name, *cn, *org, ips))
	case "relay":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		listen := fs.String("listen", "", "address to accept connections on")
		to := fs.String("to", "", "address to connect them to")
		orphan := fs.Bool("exit-with-parent", false, "exit when the parent process exits")
		_ = fs.Parse(args)
		if *orphan {
			go exitWithParent(os.Getppid())
		}
		must(relay(*listen, *to))
	case "kube-apiserver":
		os.Exit(apiserver(args))
	case "kubelet":
		os.Exit(run(kubelet.NewKubeletCommand(context.Background()), args))
	case "kube-controller-manager":
		os.Exit(run(kcm.NewControllerManagerCommand(), args))
	case "kube-scheduler":
		os.Exit(run(scheduler.NewSchedulerCommand(), args))
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
	return run(app.NewAPIServerCommand(), args)
}

func run(command *cobra.Command, args []string) int {
	command.SetArgs(args)
	return cli.Run(command)
}

type ipList []net.IP

func (l *ipList) String() string { return fmt.Sprint(*l) }

func (l *ipList) Set(v string) error {
	ip := net.ParseIP(v)
	if ip == nil {
		return fmt.Errorf("not an IP address: %q", v)
	}
	*l = append(*l, ip)
	return nil
}

// relay accepts TCP connections on listen and copies each, both ways, to a new
// connection to to. It returns only when listening fails.
func relay(listen, to string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			up, err := net.DialTimeout("tcp", to, 10*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(up, conn)
			go pipe(conn, up)
			<-done
			<-done
		}()
	}
}

// issueSigned writes NAME.crt/NAME.key in dir: a certificate for cn (and org)
// usable as client and server (with ips as its addresses), signed by caDir/ca.*.
func issueSigned(caDir, dir, name, cn, org string, ips []net.IP) error {
	if name == "" || cn == "" {
		return fmt.Errorf("issue needs --name and --cn")
	}
	caCert, caKey, err := loadCA(caDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	subject := pkix.Name{CommonName: cn}
	if org != "" {
		subject.Organization = []string{org}
	}
	_, _, err = issue(dir, name, &x509.Certificate{
		Subject:     subject,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
	}, caCert, caKey)
	return err
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("no PEM data in %s/ca.crt or ca.key", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
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
