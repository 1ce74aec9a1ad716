// A small driver for Bouncy Castle's EST client (org.bouncycastle.est), used by
// conformance/est/test_bouncycastle.py. It runs one EST operation against a server
// and prints one JSON object on stdout; files it writes go to --out.
//
//   java -cp build:bcpkix.jar:bcprov.jar:bcutil.jar EstClient <host:port> <operation> [options]
//
// operations: cacerts | csrattrs | enroll | reenroll | serverkeygen
// options:    --label L  --trust ROOT.pem  --user U --password P
//             --cert CERT.pem --key KEY.pem   (TLS client certificate)
//             --cn NAME --dns NAME            (CSR subject / SAN)
//             --key-out KEY.pem               (key of the CSR: reused by reenroll)
//             --curve P-256|P-384  --out DIR  --retries N (202 handling)
//
// Exit status 0 on success, 2 on an EST error (the HTTP status is in the JSON).

import java.io.File;
import java.io.FileReader;
import java.io.FileWriter;
import java.io.IOException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Security;
import java.security.cert.Certificate;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.X509TrustManager;

import org.bouncycastle.asn1.ASN1ObjectIdentifier;
import org.bouncycastle.asn1.pkcs.PKCSObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.ExtensionsGenerator;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.est.CACertsResponse;
import org.bouncycastle.est.CSRRequestResponse;
import org.bouncycastle.est.ESTException;
import org.bouncycastle.est.ESTService;
import org.bouncycastle.est.EnrollmentResponse;
import org.bouncycastle.est.HttpAuth;
import org.bouncycastle.est.jcajce.JcaJceUtils;
import org.bouncycastle.est.jcajce.JsseESTServiceBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.pkcs.PKCS10CertificationRequest;
import org.bouncycastle.pkcs.PKCS10CertificationRequestBuilder;
import org.bouncycastle.pkcs.jcajce.JcaPKCS10CertificationRequestBuilder;
import org.bouncycastle.util.Store;

public class EstClient {
    private static final JcaX509CertificateConverter CONVERTER = new JcaX509CertificateConverter();

    public static void main(String[] argv) throws Exception {
        Security.addProvider(new BouncyCastleProvider());
        if (argv.length < 2) {
            System.err.println("usage: EstClient <host:port> <operation> [options]");
            System.exit(64);
        }
        String server = argv[0];
        String operation = argv[1];
        Map<String, String> opts = new HashMap<>();
        for (int i = 2; i + 1 < argv.length; i += 2) {
            opts.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        Map<String, Object> out = new HashMap<>();
        out.put("operation", operation);
        int status = 0;
        try {
            ESTService est = service(server, opts);
            switch (operation) {
                case "cacerts": cacerts(est, opts, out); break;
                case "csrattrs": csrattrs(est, out); break;
                case "enroll": enroll(est, opts, out, false, false); break;
                case "reenroll": enroll(est, opts, out, true, false); break;
                case "serverkeygen": enroll(est, opts, out, false, true); break;
                default: throw new IllegalArgumentException("unknown operation " + operation);
            }
            out.put("ok", true);
        } catch (ESTException e) {
            out.put("ok", false);
            out.put("http_status", e.getStatusCode());
            out.put("error", String.valueOf(e.getMessage()));
            status = 2;
        }
        System.out.println(json(out));
        System.exit(status);
    }

    static ESTService service(String server, Map<String, String> opts) throws Exception {
        Set<TrustAnchor> anchors = new HashSet<>();
        for (X509Certificate c : readCertificates(opts.get("trust"))) {
            anchors.add(new TrustAnchor(c, null));
        }
        X509TrustManager[] trust = JcaJceUtils.getCertPathTrustManager(anchors, null);
        JsseESTServiceBuilder builder = new JsseESTServiceBuilder(server, trust);
        if (opts.containsKey("cert")) {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            List<X509Certificate> chain = readCertificates(opts.get("cert"));
            ks.setKeyEntry("client", readKey(opts.get("key")), "changeit".toCharArray(),
                           chain.toArray(new Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, "changeit".toCharArray());
            builder.withKeyManagers(kmf.getKeyManagers());
        }
        builder.withTimeout(30000);
        if (opts.containsKey("label")) {
            builder.withLabel(opts.get("label"));
        }
        return builder.build();
    }

    static void cacerts(ESTService est, Map<String, String> opts, Map<String, Object> out) throws Exception {
        CACertsResponse resp = est.getCACerts();
        List<String> subjects = new ArrayList<>();
        Store<X509CertificateHolder> store = resp.getCertificateStore();
        List<X509CertificateHolder> certs = new ArrayList<>(store.getMatches(null));
        for (X509CertificateHolder h : certs) {
            subjects.add(h.getSubject().toString());
        }
        out.put("certificates", subjects);
        out.put("trusted", resp.isTrusted());
        if (opts.containsKey("out")) {
            writePem(new File(opts.get("out"), "cacerts.pem"), certs.toArray());
        }
    }

    static void csrattrs(ESTService est, Map<String, Object> out) throws Exception {
        CSRRequestResponse resp = est.getCSRAttributes();
        List<String> oids = new ArrayList<>();
        if (resp.hasAttributesResponse()) {
            for (ASN1ObjectIdentifier oid : resp.getAttributesResponse().getRequirements()) {
                oids.add(oid.getId());
            }
        }
        out.put("present", resp.hasAttributesResponse());
        out.put("requirements", oids);
    }

    static void enroll(ESTService est, Map<String, String> opts, Map<String, Object> out,
                       boolean reenroll, boolean serverKeygen) throws Exception {
        KeyPair pair;
        if (opts.containsKey("csr-key")) {  // reuse a key (rekey is not the point: renewal keeps it)
            PrivateKey priv = readKey(opts.get("csr-key"));
            X509Certificate current = readCertificates(opts.get("cert")).get(0);
            pair = new KeyPair(current.getPublicKey(), priv);
        } else {
            KeyPairGenerator gen = KeyPairGenerator.getInstance("EC", "BC");
            gen.initialize(new ECGenParameterSpec(opts.getOrDefault("curve", "P-256")));
            pair = gen.generateKeyPair();
        }
        X500Name subject = new X500Name(opts.getOrDefault("subject", "CN=" + opts.getOrDefault("cn", "bc-client")));
        PKCS10CertificationRequestBuilder csrBuilder = new JcaPKCS10CertificationRequestBuilder(subject, pair.getPublic());
        if (opts.containsKey("dns")) {
            ExtensionsGenerator ext = new ExtensionsGenerator();
            ext.addExtension(Extension.subjectAlternativeName, false,
                             new GeneralNames(new GeneralName(GeneralName.dNSName, opts.get("dns"))));
            csrBuilder.addAttribute(PKCSObjectIdentifiers.pkcs_9_at_extensionRequest, ext.generate());
        }
        ContentSigner signer = new JcaContentSignerBuilder("SHA256withECDSA").setProvider("BC").build(pair.getPrivate());
        PKCS10CertificationRequest csr = csrBuilder.build(signer);
        HttpAuth auth = opts.containsKey("user")
            ? new HttpAuth(opts.get("user"), opts.get("password").toCharArray()) : null;

        EnrollmentResponse resp = serverKeygen
            ? est.simpleEnrollWithServersideCreation(csr, auth)
            : est.simpleEnroll(reenroll, csr, auth);
        int retries = Integer.parseInt(opts.getOrDefault("retries", "0"));
        int waited = 0;
        while (!resp.isCompleted()) {
            out.put("pending", true);
            if (waited >= retries) {
                out.put("completed", false);
                return;
            }
            long delay = Math.max(0, resp.getNotBefore() - System.currentTimeMillis());
            Thread.sleep(delay);
            waited++;
            resp = est.simpleEnroll(resp);
        }
        out.put("retries_used", waited);
        out.put("completed", true);
        List<X509CertificateHolder> certs = new ArrayList<>(resp.getStore().getMatches(null));
        List<String> subjects = new ArrayList<>();
        for (X509CertificateHolder h : certs) {
            subjects.add(h.getSubject().toString());
        }
        out.put("certificates", subjects);
        X509Certificate issued = CONVERTER.getCertificate(certs.get(0));
        out.put("serial", issued.getSerialNumber().toString(16));
        PrivateKey key = pair.getPrivate();
        if (serverKeygen) {
            PrivateKeyInfo info = resp.getPrivateKeyInfo();
            out.put("server_key", info != null);
            key = new JcaPEMKeyConverter().setProvider("BC").getPrivateKey(info);
            PublicKey certKey = issued.getPublicKey();
            out.put("key_matches_certificate", publicMatches(key, certKey));
        }
        if (opts.containsKey("out")) {
            File dir = new File(opts.get("out"));
            writePem(new File(dir, "cert.pem"), new Object[] {issued});
            writePem(new File(dir, "key.pem"), new Object[] {key});
        }
    }

    static boolean publicMatches(PrivateKey key, PublicKey certKey) throws Exception {
        // Sign and verify with the pair: the server-made key belongs to the certificate.
        java.security.Signature s = java.security.Signature.getInstance("SHA256withECDSA", "BC");
        s.initSign(key);
        byte[] data = "est".getBytes();
        s.update(data);
        byte[] sig = s.sign();
        s.initVerify(certKey);
        s.update(data);
        return s.verify(sig);
    }

    static List<X509Certificate> readCertificates(String path) throws Exception {
        List<X509Certificate> certs = new ArrayList<>();
        try (PEMParser p = new PEMParser(new FileReader(path))) {
            Object o;
            while ((o = p.readObject()) != null) {
                if (o instanceof X509CertificateHolder) {
                    certs.add(CONVERTER.getCertificate((X509CertificateHolder) o));
                }
            }
        }
        return certs;
    }

    static PrivateKey readKey(String path) throws Exception {
        try (PEMParser p = new PEMParser(new FileReader(path))) {
            Object o = p.readObject();
            JcaPEMKeyConverter conv = new JcaPEMKeyConverter().setProvider("BC");
            if (o instanceof PrivateKeyInfo) {
                return conv.getPrivateKey((PrivateKeyInfo) o);
            }
            if (o instanceof org.bouncycastle.openssl.PEMKeyPair) {
                return conv.getKeyPair((org.bouncycastle.openssl.PEMKeyPair) o).getPrivate();
            }
            throw new IOException("no private key in " + path);
        }
    }

    static void writePem(File file, Object[] objects) throws IOException {
        try (JcaPEMWriter w = new JcaPEMWriter(new FileWriter(file))) {
            for (Object o : objects) {
                w.writeObject(o);
            }
        }
    }

    static String json(Object value) {
        if (value == null) {
            return "null";
        }
        if (value instanceof Boolean || value instanceof Number) {
            return value.toString();
        }
        if (value instanceof Map) {
            StringBuilder b = new StringBuilder("{");
            for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
                if (b.length() > 1) {
                    b.append(", ");
                }
                b.append(json(String.valueOf(e.getKey()))).append(": ").append(json(e.getValue()));
            }
            return b.append("}").toString();
        }
        if (value instanceof Collection) {
            StringBuilder b = new StringBuilder("[");
            for (Object o : (Collection<?>) value) {
                if (b.length() > 1) {
                    b.append(", ");
                }
                b.append(json(o));
            }
            return b.append("]").toString();
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : value.toString().toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append("\"").toString();
    }
}
